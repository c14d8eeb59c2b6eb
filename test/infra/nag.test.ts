import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Validations } from 'aws-cdk-lib';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import type { IConstruct } from 'constructs';
import { afterAll, describe, expect, it } from 'vitest';
import { buildStage, type SynthOptions } from './synth-fixture.js';

/**
 * cdk-nag (AwsSolutions, v3 Validations API) as a unit test: synthesis with the plugin must succeed
 * with zero unacknowledged findings, every acknowledgement must carry a written reason, and a
 * deliberately bad resource must be caught (so the plugin is known to run on our stacks).
 */

/** A whole-app synth is CPU-bound; on a busy 2-core machine it can take far longer than alone. */
const SYNTH_TIMEOUT_MS = 240_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-nag-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Report {
  pluginReports: {
    pluginName: string;
    conclusion: string;
    violations: { ruleName: string; severity?: string; violatingConstructs: { constructPath: string }[] }[];
  }[];
}

function readReport(outdir: string): Report | undefined {
  const file = path.join(outdir, 'validation-report.json');
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Report) : undefined;
}

function violations(report: Report | undefined): string[] {
  return (report?.pluginReports ?? []).flatMap((p) =>
    p.violations.flatMap((v) => v.violatingConstructs.map((c) => `${v.ruleName} @ ${c.constructPath}`)),
  );
}

/** Every acknowledgement recorded in the tree: [construct path, rule id, reason]. */
function acknowledgements(root: IConstruct): [string, string, string][] {
  return root.node
    .findAll()
    .flatMap((c) =>
      c.node.metadata
        .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((m) =>
          Object.entries(m.data as Record<string, string>).map(([id, reason]): [string, string, string] => [
            c.node.path,
            id,
            reason,
          ]),
        ),
    );
}

const SECRETS = ['wsp/git/github-token', 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:wsp/git/gitlab-AbCdEf'];

/**
 * A deployable stage has a git layer for the provisioner; without one the synth carries a
 * deliberate warning (its own test below), which the validation report lists next to nag findings.
 */
const GIT_LAYER = 'arn:aws:lambda:eu-west-1:111111111111:layer:wsp-git:3';

const cases: [string, SynthOptions][] = [
  ['dev, IAM auth, two git secrets', { stage: 'dev', overrides: { gitSecrets: SECRETS, gitLayerArn: GIT_LAYER } }],
  [
    'prod, bearer auth (Lambda authorizer)',
    { stage: 'prod', overrides: { gitSecrets: SECRETS, apiAuth: 'bearer', gitLayerArn: GIT_LAYER } },
  ],
  ['dev without git secrets', { stage: 'dev', overrides: { gitLayerArn: GIT_LAYER } }],
  [
    'dev with webhook signing secrets (read by api, worker, janitor)',
    {
      stage: 'dev',
      overrides: {
        gitLayerArn: GIT_LAYER,
        webhookSecrets: ['wsp/hooks/controller'],
        provider: { webhooks: [{ url: 'https://hooks.example.com/wsp', secret: `secretsmanager:${SECRETS[1]}` }] },
      },
    },
  ],
  [
    'prod with a warm pool (the janitor runs tasks)',
    { stage: 'prod', overrides: { gitLayerArn: GIT_LAYER, warmPoolSize: 3 } },
  ],
];

describe('cdk-nag AwsSolutions', () => {
  it.each(cases)(
    '%s: zero unacknowledged findings',
    (name, options) => {
      const outdir = path.join(tmp, name.replace(/\W+/g, '-'));
      const built = buildStage({ ...options, nag: true, outdir });
      let error: unknown;
      try {
        built.app.synth();
      } catch (err) {
        error = err;
      }
      expect(violations(readReport(outdir))).toEqual([]);
      expect(error).toBeUndefined();
      // The plugin did run (a report is written even when it is clean).
      expect(readReport(outdir)).toBeDefined();
    },
    SYNTH_TIMEOUT_MS,
  );

  it(
    'without a prebuilt git layer (the stack builds one) there is no finding at all',
    () => {
      const outdir = path.join(tmp, 'no-git-layer');
      const built = buildStage({ stage: 'dev', nag: true, outdir });
      expect(() => built.app.synth()).not.toThrow();
      expect(violations(readReport(outdir))).toEqual([]);
    },
    SYNTH_TIMEOUT_MS,
  );

  it(
    'every acknowledgement has a written reason, and wildcard ones name the exact resource (appliesTo)',
    () => {
      const built = buildStage({ stage: 'prod', overrides: { gitSecrets: SECRETS, apiAuth: 'bearer' } });
      const acks = acknowledgements(built.app);
      expect(acks.length).toBeGreaterThan(5);
      for (const [where, id, reason] of acks) {
        expect(reason.trim().length, `${where} ${id}`).toBeGreaterThan(30);
        if (id.includes('IAM5')) expect(id, where).toMatch(/IAM5\[(Resource|Action)::.+\]$/);
        // A bare rule id on an IAM principal would hide every future wildcard on it.
        expect(id, where).not.toMatch(/AwsSolutions-IAM5$/);
      }
    },
    SYNTH_TIMEOUT_MS,
  );

  it(
    'catches a non-compliant resource added to our stacks (control)',
    () => {
      const outdir = path.join(tmp, 'control');
      const built = buildStage({ stage: 'dev', nag: true, outdir, overrides: { gitLayerArn: GIT_LAYER } });
      new Bucket(built.stateful, 'UnsafeBucket');
      expect(() => built.app.synth()).toThrow(/AwsSolutions-S10/);
      const found = violations(readReport(outdir));
      expect(found).toContain('AwsSolutions-S10 @ wsp-dev-stateful/UnsafeBucket/Resource');
      expect(found.every((v) => v.includes('UnsafeBucket'))).toBe(true);
    },
    SYNTH_TIMEOUT_MS,
  );
});
