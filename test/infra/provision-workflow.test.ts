import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { logicalId, synthTemplates, type Json, type Templates } from './synth-fixture.js';

/** The provisioning state machine's shape: the loop, its retries, its catch, its timeouts. */

let t: Templates;
let definition: { StartAt: string; TimeoutSeconds?: number; States: Record<string, Json> };
beforeAll(() => {
  t = synthTemplates({});
  const machine = t.stateless.toJSON()['Resources'][logicalId(t.built.stateless.provisioning.stateMachine)] as Json;
  const props = machine['Properties'] as Json;
  // DefinitionString is a Fn::Join of literal JSON and the worker's ARN: render the ARN as a marker.
  const parts = (props['DefinitionString'] as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
  const text = parts.map((p) => (typeof p === 'string' ? p : 'WORKER_ARN')).join('');
  definition = JSON.parse(text) as typeof definition;
});

const state = (name: string): Json => {
  const found = Object.entries(definition.States).find(([k]) => k.endsWith(name));
  if (!found) throw new Error(`no state ${name} in ${Object.keys(definition.States).join(', ')}`);
  return found[1];
};

describe('provisioning state machine', () => {
  it('is a Standard state machine with X-Ray, logs of every event, and an overall timeout', () => {
    t.stateless.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: false }),
    });
    expect(definition.TimeoutSeconds).toBe(12 * 3600);
  });

  it('loops: Begin → RunPhase → WhatNext → (Pause → RunPhase | Settled | NoOutcome → FailWorkspace)', () => {
    expect(definition.StartAt).toBe('Begin');
    expect(state('Begin')).toMatchObject({
      Type: 'Pass',
      Result: { done: false, next: 'start', waitSeconds: 0 },
      ResultPath: '$.outcome',
      Next: 'RunPhase',
    });
    expect(state('RunPhase')).toMatchObject({
      Type: 'Task',
      // The function itself (payloadResponseOnly): the worker's answer is the result, put at $.outcome.
      Resource: 'WORKER_ARN',
      Parameters: { kind: 'provision-phase', 'workspaceId.$': '$.workspaceId', 'phase.$': '$.outcome.next' },
      ResultPath: '$.outcome',
      Next: 'WhatNext',
    });
    const choice = state('WhatNext') as { Choices: Json[]; Default: string };
    expect(choice.Choices.map((c) => c['Next'])).toEqual(['Settled', 'Pause']);
    expect(choice.Default).toBe('NoOutcome');
    expect(state('Pause')).toEqual({ Type: 'Wait', SecondsPath: '$.outcome.waitSeconds', Next: 'RunPhase' });
    expect(state('Settled')).toEqual({ Type: 'Succeed' });
    expect(state('NoOutcome')).toMatchObject({ Type: 'Pass', Next: 'FailWorkspace' });
  });

  it('a phase gets a little more than the worker timeout, and is retried on throttles, service errors and timeouts', () => {
    const phase = state('RunPhase') as { TimeoutSeconds: number; Retry: Json[] };
    expect(phase.TimeoutSeconds).toBe(16 * 60);
    const retried = (error: string) => phase.Retry.find((r) => (r['ErrorEquals'] as string[]).includes(error));
    for (const e of ['Lambda.ServiceException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'])
      expect(retried(e), e).toMatchObject({ BackoffRate: 2 });
    expect(retried('Lambda.TooManyRequestsException')).toMatchObject({ JitterStrategy: 'FULL', MaxAttempts: 8 });
    for (const e of ['TimeoutError', 'Sandbox.Timedout', 'Lambda.Unknown', 'States.Timeout'])
      expect(retried(e), e).toMatchObject({ MaxAttempts: 2, BackoffRate: 2 });
  });

  it('when a phase gives up, the Catch has the worker fail the workspace, then the execution fails', () => {
    const phase = state('RunPhase') as { Catch: Json[] };
    expect(phase.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'FailWorkspace' }]);
    expect(state('FailWorkspace')).toMatchObject({
      Type: 'Task',
      Resource: 'WORKER_ARN',
      Parameters: { kind: 'provision-failed', 'workspaceId.$': '$.workspaceId', 'error.$': '$.error.Error' },
      ResultPath: null,
      Next: 'GaveUp',
    });
    expect(state('GaveUp')).toMatchObject({ Type: 'Fail', Error: 'ProvisioningFailed' });
  });
});
