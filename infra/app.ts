import fs from 'node:fs';
import path from 'node:path';
import { App, type Environment } from 'aws-cdk-lib';
import { stageConfig, type ApiAuthMode, type StageOverrides } from './config.js';
import { addWspStacks } from './wsp-app.js';

/**
 * The CDK app (`npx cdk synth|deploy`). Context (`-c key=value`):
 * - `stage`: `dev` (default) or `prod`.
 * - `account`, `region`: target environment; else CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION; else
 *   environment-agnostic stacks.
 * - `gitSecrets`: comma-separated Secrets Manager names or ARNs of the git tokens.
 * - `webhookSecrets`: comma-separated Secrets Manager names or ARNs of webhook signing secrets (those
 *   the provider config's `webhooks` name are added by themselves).
 * - `vpcId`: use an existing VPC instead of creating one.
 * - `apiAuth`: `iam` (default) or `bearer`.
 * - `providerConfig`: path of a provider config JSON file (repositories, setup, workspace).
 * - `warmPoolSize`: tasks kept started per cache image (0–20; default 0).
 * - `gitLayerArn`: Lambda layer version ARN with git for the provisioner (docs/deploy.md).
 * - `ephemeralStorageGiB`: workspace task ephemeral storage (21–200).
 */
const app = new App();
const ctx = (key: string): string | undefined => {
  const value: unknown = app.node.tryGetContext(key);
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
};

/** A number from context: `-c key=3` arrives as a string, cdk.json may hold a number. NaN if not numeric. */
const ctxNumber = (key: string): number | undefined => {
  const value: unknown = app.node.tryGetContext(key);
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '')
    return /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  return undefined;
};

const overrides: StageOverrides = {};
const secrets = ctx('gitSecrets');
if (secrets)
  overrides.gitSecrets = secrets
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const hookSecrets = ctx('webhookSecrets');
if (hookSecrets)
  overrides.webhookSecrets = hookSecrets
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const vpcId = ctx('vpcId');
if (vpcId) overrides.vpcId = vpcId;
const apiAuth = ctx('apiAuth');
if (apiAuth) overrides.apiAuth = apiAuth as ApiAuthMode;
const providerConfig = ctx('providerConfig');
if (providerConfig)
  overrides.provider = JSON.parse(fs.readFileSync(path.resolve(providerConfig), 'utf8')) as Record<string, unknown>;
const warmPoolSize = ctxNumber('warmPoolSize');
if (warmPoolSize !== undefined) overrides.warmPoolSize = warmPoolSize;
const gitLayerArn = ctx('gitLayerArn');
if (gitLayerArn) overrides.gitLayerArn = gitLayerArn;
const ephemeralStorageGiB = ctxNumber('ephemeralStorageGiB');
if (ephemeralStorageGiB !== undefined) overrides.ephemeralStorageGiB = ephemeralStorageGiB;

const account = ctx('account') ?? process.env.CDK_DEFAULT_ACCOUNT;
const region = ctx('region') ?? process.env.CDK_DEFAULT_REGION;
const env: Environment | undefined = account || region ? { account, region } : undefined;

addWspStacks(app, stageConfig(ctx('stage') ?? 'dev', overrides), env);
app.synth();
