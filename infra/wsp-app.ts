import { Tags, Validations, type App, type Environment } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { StageConfig } from './config.js';
import { StatefulStack } from './stacks/stateful-stack.js';
import { StatelessStack } from './stacks/stateless-stack.js';

export interface WspStacks {
  stateful: StatefulStack;
  stateless: StatelessStack;
}

/**
 * Adds one stage's two stacks to `app` (`wsp-<stage>-stateful`, `wsp-<stage>-stateless`) and the
 * cdk-nag AwsSolutions checks, so a synth with an unacknowledged finding fails. `env` undefined →
 * environment-agnostic stacks (only possible with a created VPC). Used by app.ts and the tests alike.
 */
export function addWspStacks(
  app: App,
  stage: StageConfig,
  env?: Environment,
  options: { nag?: boolean } = {},
): WspStacks {
  if (stage.vpc.kind === 'import' && (!env?.account || !env.region)) {
    throw new Error(
      `stage '${stage.name}' imports VPC ${stage.vpc.vpcId}: an account and region are required (context account/region or CDK_DEFAULT_*)`,
    );
  }
  const stateful = new StatefulStack(app, `wsp-${stage.name}-stateful`, {
    env,
    stage,
    description: `Workspace Provider ${stage.name}: state table, data bucket, image repository (RETAIN)`,
    terminationProtection: stage.name === 'prod',
  });
  const stateless = new StatelessStack(app, `wsp-${stage.name}-stateless`, {
    env,
    stage,
    description: `Workspace Provider ${stage.name}: HTTP API, functions, workspace compute`,
    gitSecrets: stateful.gitSecrets,
    webhookSecrets: stateful.webhookSecrets,
  });
  stateless.addStackDependency(stateful, 'the stateless stack uses the table, bucket and repository by name');
  Tags.of(app).add('wsp:stage', stage.name);
  Tags.of(app).add('wsp:app', 'workspace-provider');
  if (options.nag !== false) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { stateful, stateless };
}
