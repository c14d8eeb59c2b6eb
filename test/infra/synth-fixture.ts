import fs from 'node:fs';
import path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { stageConfig, type StageOverrides } from '../../infra/config.js';
import { PROJECT_ROOT } from '../../infra/constructs/wsp-function.js';
import { addWspStacks, type WspStacks } from '../../infra/wsp-app.js';

/** The dummy environment the committed cdk.context.json answers lookups for (no AWS needed). */
export const TEST_ENV = { account: '111111111111', region: 'eu-west-1' } as const;

/** The context `cdk synth` would give the app: cdk.json's feature flags plus cdk.context.json. */
export function cliContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'cdk.json'), 'utf8')) as {
    context?: Record<string, unknown>;
  };
  const lookups = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'cdk.context.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  return { ...cdkJson.context, ...lookups };
}

export interface SynthOptions {
  stage?: string;
  overrides?: StageOverrides;
  /** Run esbuild for every function (slow-ish). Default false: assets are not bundled. */
  bundle?: boolean;
  /** Register the cdk-nag AwsSolutions plugin (synth throws on a finding). Default false. */
  nag?: boolean;
  outdir?: string;
  context?: Record<string, unknown>;
}

export interface Synthesized extends WspStacks {
  app: App;
  stateful: WspStacks['stateful'];
  stateless: WspStacks['stateless'];
}

export function buildStage(options: SynthOptions = {}): Synthesized {
  const context: Record<string, unknown> = { ...cliContext(), ...options.context };
  // An empty list tells NodejsFunction to skip bundling in every stack.
  if (!options.bundle) context['aws:cdk:bundling-stacks'] = [];
  const app = new App({ context, ...(options.outdir ? { outdir: options.outdir } : {}) });
  const stacks = addWspStacks(app, stageConfig(options.stage ?? 'dev', options.overrides), TEST_ENV, {
    nag: options.nag ?? false,
  });
  return { app, ...stacks };
}

export interface Templates {
  stateful: Template;
  stateless: Template;
  built: Synthesized;
}

export function synthTemplates(options: SynthOptions = {}): Templates {
  const built = buildStage(options);
  return { stateful: Template.fromStack(built.stateful), stateless: Template.fromStack(built.stateless), built };
}

export type Json = Record<string, unknown>;

/** Every resource of `type` as [logicalId, Properties]. */
export function resourcesOf(template: Template, type: string): [string, Json][] {
  return Object.entries(template.findResources(type)).map(([id, r]) => [id, ((r as Json)['Properties'] ?? {}) as Json]);
}

export interface PolicyStatementJson {
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  Condition?: unknown;
}

/** Actions of a statement as an array. */
export function actionsOf(statement: PolicyStatementJson): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}

/** `{Ref: X}` or `{Fn::GetAtt: [X, ...]}` → X. */
function refTarget(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Json;
  if (typeof v['Ref'] === 'string') return v['Ref'];
  const getAtt = v['Fn::GetAtt'];
  if (Array.isArray(getAtt) && typeof getAtt[0] === 'string') return getAtt[0];
  return undefined;
}

/**
 * Every Allow statement granted to each IAM role of the template: inline `Policies`, and
 * AWS::IAM::Policy / ManagedPolicy resources attached to it. Keyed by the role's logical id.
 * Managed policy ARNs (AWS managed) are reported as a pseudo statement so a test notices them.
 */
export function statementsByRole(template: Template): Map<string, PolicyStatementJson[]> {
  const out = new Map<string, PolicyStatementJson[]>();
  const add = (role: string, statements: PolicyStatementJson[]) =>
    out.set(role, [...(out.get(role) ?? []), ...statements]);
  for (const [id, props] of resourcesOf(template, 'AWS::IAM::Role')) {
    out.set(id, out.get(id) ?? []);
    for (const p of (props['Policies'] as Json[] | undefined) ?? [])
      add(id, ((p['PolicyDocument'] as Json)['Statement'] as PolicyStatementJson[]) ?? []);
    for (const arn of (props['ManagedPolicyArns'] as unknown[] | undefined) ?? []) {
      add(id, [{ Effect: 'Allow', Action: `managed-policy:${JSON.stringify(arn)}`, Resource: '*' }]);
    }
  }
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
    for (const [, props] of resourcesOf(template, type)) {
      const statements = (((props['PolicyDocument'] as Json)['Statement'] as PolicyStatementJson[]) ?? []).filter(
        (s) => s.Effect === 'Allow',
      );
      for (const role of (props['Roles'] as unknown[] | undefined) ?? []) {
        const target = refTarget(role);
        if (target) add(target, statements);
      }
    }
  }
  return out;
}

/** True when `granted` (which may hold wildcards, e.g. `ecr:*`, `*`) covers `action`. */
export function actionCovers(granted: string, action: string): boolean {
  const re = new RegExp(
    `^${granted
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
    'i',
  );
  return re.test(action);
}

export function roleCan(statements: PolicyStatementJson[], action: string): boolean {
  return statements.some((s) => s.Effect === 'Allow' && actionsOf(s).some((a) => actionCovers(a, action)));
}

/** The logical id of the role a function runs as. */
export function functionRole(template: Template, functionLogicalId: string): string {
  const fn = template.toJSON()['Resources'][functionLogicalId] as Json | undefined;
  if (!fn) throw new Error(`no resource ${functionLogicalId}`);
  const role = refTarget((fn['Properties'] as Json)['Role']);
  if (!role) throw new Error(`function ${functionLogicalId} has no role reference`);
  return role;
}

/** The logical id of a construct's CloudFormation resource (an L2's default child). */
export function logicalId(construct: IConstruct): string {
  const child = construct.node.defaultChild ?? construct;
  return Stack.of(construct).resolve((child as unknown as { logicalId: string }).logicalId) as string;
}
