import { DOCKER_BUNDLING_CONTEXT } from '../../infra/constructs/git-layer.js';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import { afterAll, describe, expect, it } from 'vitest';
import { stageConfig } from '../../infra/config.js';
import { PROJECT_ROOT } from '../../infra/constructs/wsp-function.js';
import { addWspStacks } from '../../infra/wsp-app.js';
import { buildStage, cliContext, TEST_ENV } from './synth-fixture.js';

/**
 * The whole app synthesizes offline, as `npx cdk synth` does: real esbuild bundles for every
 * handler, cdk-nag on, every lookup answered by the committed cdk.context.json.
 */

/** A whole-app synth is CPU-bound; on a busy 2-core machine it can take far longer than alone. */
const SYNTH_TIMEOUT_MS = 240_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-synth-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Manifest {
  artifacts: Record<string, { type: string; environment?: string; properties?: Record<string, unknown> }>;
  missing?: { key: string }[];
}

describe('cdk synth (offline)', () => {
  it(
    'bundles every handler with esbuild and writes both stacks with nothing missing',
    () => {
      const outdir = path.join(tmp, 'dev');
      const built = buildStage({
        stage: 'dev',
        bundle: true,
        nag: true,
        outdir,
        overrides: { apiAuth: 'bearer', gitSecrets: ['wsp/git/token'] },
        // The git layer is built in Docker (Amazon Linux, arm64) by cdk deploy; offline it is not.
        context: { [DOCKER_BUNDLING_CONTEXT]: false },
      });
      const assembly = built.app.synth();
      const manifest = JSON.parse(fs.readFileSync(path.join(assembly.directory, 'manifest.json'), 'utf8')) as Manifest;
      expect(manifest.missing).toBeUndefined();
      const stacks = Object.entries(manifest.artifacts).filter(([, a]) => a.type === 'aws:cloudformation:stack');
      expect(stacks.map(([name, a]) => [name, a.environment]).sort()).toEqual([
        ['wsp-dev-stateful', `aws://${TEST_ENV.account}/${TEST_ENV.region}`],
        ['wsp-dev-stateless', `aws://${TEST_ENV.account}/${TEST_ENV.region}`],
      ]);

      // One bundled ESM asset per function (api, worker, task-events, janitor, authorizer).
      const bundles = fs
        .readdirSync(assembly.directory)
        .filter((d) => d.startsWith('asset.') && fs.existsSync(path.join(assembly.directory, d, 'index.mjs')));
      expect(bundles).toHaveLength(5);
      for (const dir of bundles) {
        const code = fs.readFileSync(path.join(assembly.directory, dir, 'index.mjs'), 'utf8');
        expect(code.length).toBeGreaterThan(1000);
        expect(code).toContain('__wspCreateRequire'); // our banner: CommonJS dependencies get a require
        expect(code).not.toMatch(/from ?["']dockerode["']|require\(["']dockerode["']\)/);
      }
    },
    SYNTH_TIMEOUT_MS,
  );

  it(
    'an imported VPC needs an account and region, a recorded lookup, and then synthesizes offline',
    () => {
      const stage = stageConfig('dev', { vpcId: 'vpc-0123456789abcdef0' });
      const context = { ...cliContext(), 'aws:cdk:bundling-stacks': [] };
      expect(() => addWspStacks(new App({ context }), stage)).toThrow(/account and region are required/);

      // Without the lookup result the CLI would ask AWS; offline the key stays missing (and the dummy
      // VPC id fails CloudFormation validation, so checks are off for this probe only).
      const probe = new App({
        context: { ...context, '@aws-cdk/core:validateAgainstDefaultRules': false },
        outdir: path.join(tmp, 'probe'),
      });
      addWspStacks(probe, stage, TEST_ENV, { nag: false });
      const missing =
        (JSON.parse(fs.readFileSync(path.join(probe.synth().directory, 'manifest.json'), 'utf8')) as Manifest)
          .missing ?? [];
      const key = missing
        .map((m) => m.key)
        .find((k) => k.startsWith('vpc-provider:') && k.includes('vpc-0123456789abcdef0'));
      expect(key).toBeDefined();

      // With the lookup recorded (what `cdk synth` with credentials writes into cdk.context.json).
      const lookup = {
        vpcId: 'vpc-0123456789abcdef0',
        vpcCidrBlock: '10.20.0.0/16',
        availabilityZones: ['eu-west-1a', 'eu-west-1b'],
        subnetGroups: [
          {
            name: 'private',
            type: 'Private',
            subnets: [
              {
                subnetId: 'subnet-0aaaaaaaaaaaaaaa1',
                cidr: '10.20.0.0/20',
                availabilityZone: 'eu-west-1a',
                routeTableId: 'rtb-0aaaaaaaaaaaaaaa1',
              },
              {
                subnetId: 'subnet-0aaaaaaaaaaaaaaa2',
                cidr: '10.20.16.0/20',
                availabilityZone: 'eu-west-1b',
                routeTableId: 'rtb-0aaaaaaaaaaaaaaa2',
              },
            ],
          },
        ],
      };
      const app = new App({ context: { ...context, [key!]: lookup }, outdir: path.join(tmp, 'import') });
      const { stateless } = addWspStacks(app, stage, TEST_ENV);
      const assembly = app.synth();
      expect(
        (JSON.parse(fs.readFileSync(path.join(assembly.directory, 'manifest.json'), 'utf8')) as Manifest).missing,
      ).toBeUndefined();
      const template = JSON.stringify(assembly.getStackByName(stateless.stackName).template);
      expect(template).toContain('subnet-0aaaaaaaaaaaaaaa1,subnet-0aaaaaaaaaaaaaaa2');
      expect(template).not.toContain('AWS::EC2::VPC"');
    },
    SYNTH_TIMEOUT_MS,
  );

  it(
    'infra/app.ts reads stage, environment, secrets, auth mode and provider config from context as the CLI passes it',
    () => {
      const outdir = path.join(tmp, 'app');
      const providerFile = path.join(tmp, 'provider.json');
      const provider = {
        repositories: [
          { url: 'https://example.com/r.git', path: 'r', credential: 'secretsmanager:wsp/git/from-config#token' },
        ],
      };
      fs.writeFileSync(providerFile, JSON.stringify(provider));
      const context = {
        ...cliContext(),
        'aws:cdk:bundling-stacks': [],
        stage: 'prod',
        apiAuth: 'bearer',
        gitSecrets: 'wsp/git/a, wsp/git/b',
        webhookSecrets: 'wsp/hooks/a',
        providerConfig: providerFile,
        // `-c key=value` arrives as strings.
        warmPoolSize: '4',
        gitLayerArn: 'arn:aws:lambda:eu-west-1:111111111111:layer:wsp-git:2',
        ephemeralStorageGiB: '120',
      };
      // The same variables the cdk CLI sets for the app process.
      execFileSync(process.execPath, ['--import', 'tsx', 'infra/app.ts'], {
        cwd: PROJECT_ROOT,
        env: {
          ...process.env,
          CDK_OUTDIR: outdir,
          CDK_CONTEXT_JSON: JSON.stringify(context),
          CDK_DEFAULT_ACCOUNT: TEST_ENV.account,
          CDK_DEFAULT_REGION: TEST_ENV.region,
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const manifest = JSON.parse(fs.readFileSync(path.join(outdir, 'manifest.json'), 'utf8')) as Manifest;
      expect(manifest.missing).toBeUndefined();
      const stacks = Object.entries(manifest.artifacts).filter(([, a]) => a.type === 'aws:cloudformation:stack');
      expect(stacks.map(([name, a]) => `${name} ${a.environment}`).sort()).toEqual([
        `wsp-prod-stateful aws://${TEST_ENV.account}/${TEST_ENV.region}`,
        `wsp-prod-stateless aws://${TEST_ENV.account}/${TEST_ENV.region}`,
      ]);
      const template = fs.readFileSync(path.join(outdir, 'wsp-prod-stateless.template.json'), 'utf8');
      expect(template).toContain('AWS::ApiGatewayV2::Authorizer');
      for (const name of ['wsp/git/a', 'wsp/git/b', 'wsp/git/from-config', 'wsp/hooks/a'])
        expect(template).toContain(`secret:${name}-??????`);
      expect(template).toContain(JSON.stringify(JSON.stringify(provider)));
      const parsed = JSON.parse(template) as {
        Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
      };
      const fns = Object.values(parsed.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
      expect(
        fns.filter((f) => JSON.stringify(f.Properties['Layers']) === JSON.stringify([context.gitLayerArn])),
      ).toHaveLength(1);
      // api, worker, task-events, janitor (the authorizer and CDK's custom-resource function get no ECS env).
      expect(
        fns.filter((f) => JSON.stringify(f.Properties['Environment'] ?? {}).includes('"WSP_ECS_WARM_POOL_SIZE":"4"')),
      ).toHaveLength(4);
      const [td] = Object.values(parsed.Resources).filter((r) => r.Type === 'AWS::ECS::TaskDefinition');
      expect(td?.Properties['EphemeralStorage']).toEqual({ SizeInGiB: 120 });
    },
    SYNTH_TIMEOUT_MS,
  );
});
