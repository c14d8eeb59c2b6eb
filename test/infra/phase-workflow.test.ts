import { Match } from 'aws-cdk-lib/assertions';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { beforeAll, describe, expect, it } from 'vitest';
import { logicalId, synthTemplates, type Json, type Templates } from './synth-fixture.js';

/** The shape of both state machines (provisioning, operations): the loop, its retries, its catch, its timeouts. */

type Definition = { StartAt: string; TimeoutSeconds?: number; States: Record<string, Json> };

let t: Templates;
beforeAll(() => {
  t = synthTemplates({});
});

function definitionOf(machine: StateMachine): Definition {
  const resource = t.stateless.toJSON()['Resources'][logicalId(machine)] as Json;
  const props = resource['Properties'] as Json;
  // DefinitionString is a Fn::Join of literal JSON and the worker's ARN: render the ARN as a marker.
  const parts = (props['DefinitionString'] as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
  const text = parts.map((p) => (typeof p === 'string' ? p : 'WORKER_ARN')).join('');
  return JSON.parse(text) as Definition;
}

const MACHINES = [
  {
    name: 'provisioning',
    machine: () => t.built.stateless.provisioning.stateMachine,
    work: 'provision',
    firstPhase: 'start',
    ids: { 'workspaceId.$': '$.workspaceId' },
    timeoutSeconds: 12 * 3600,
    fail: 'ProvisioningFailed',
  },
  {
    name: 'operations',
    machine: () => t.built.stateless.operations.stateMachine,
    work: 'operation',
    firstPhase: 'begin',
    ids: { 'workspaceId.$': '$.workspaceId', 'operationId.$': '$.operationId' },
    timeoutSeconds: 6 * 3600,
    fail: 'OperationFailed',
  },
] as const;

it('there are exactly two state machines, both Standard with X-Ray and logs of every event without execution data', () => {
  t.stateless.resourceCountIs('AWS::StepFunctions::StateMachine', 2);
  t.stateless.allResourcesProperties('AWS::StepFunctions::StateMachine', {
    StateMachineType: 'STANDARD',
    TracingConfiguration: { Enabled: true },
    LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: false }),
  });
});

describe.each(MACHINES)('$name state machine', (m) => {
  let definition: Definition;
  beforeAll(() => {
    definition = definitionOf(m.machine());
  });
  const state = (name: string): Json => {
    const found = Object.entries(definition.States).find(([k]) => k.endsWith(name));
    if (!found) throw new Error(`no state ${name} in ${Object.keys(definition.States).join(', ')}`);
    return found[1];
  };

  it('has an overall timeout', () => {
    expect(definition.TimeoutSeconds).toBe(m.timeoutSeconds);
  });

  it('loops: Begin → RunPhase → WhatNext → (Pause → RunPhase | Settled | NoOutcome → FailWork)', () => {
    expect(definition.StartAt).toBe('Begin');
    expect(state('Begin')).toMatchObject({
      Type: 'Pass',
      Result: { done: false, next: m.firstPhase, waitSeconds: 0 },
      ResultPath: '$.outcome',
      Next: 'RunPhase',
    });
    expect(state('RunPhase')).toMatchObject({
      Type: 'Task',
      // The function itself (payloadResponseOnly): the worker's answer is the result, put at $.outcome.
      Resource: 'WORKER_ARN',
      Parameters: { kind: `${m.work}-phase`, ...m.ids, 'phase.$': '$.outcome.next' },
      ResultPath: '$.outcome',
      Next: 'WhatNext',
    });
    const choice = state('WhatNext') as { Choices: Json[]; Default: string };
    expect(choice.Choices.map((c) => c['Next'])).toEqual(['Settled', 'Pause']);
    expect(choice.Default).toBe('NoOutcome');
    expect(state('Pause')).toEqual({ Type: 'Wait', SecondsPath: '$.outcome.waitSeconds', Next: 'RunPhase' });
    expect(state('Settled')).toEqual({ Type: 'Succeed' });
    expect(state('NoOutcome')).toMatchObject({ Type: 'Pass', Next: 'FailWork' });
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

  it('when a phase gives up, the Catch has the worker fail the work, then the execution fails', () => {
    const phase = state('RunPhase') as { Catch: Json[] };
    expect(phase.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'FailWork' }]);
    expect(state('FailWork')).toMatchObject({
      Type: 'Task',
      Resource: 'WORKER_ARN',
      Parameters: { kind: `${m.work}-failed`, ...m.ids, 'error.$': '$.error.Error' },
      ResultPath: null,
      Next: 'GaveUp',
    });
    expect(state('GaveUp')).toMatchObject({ Type: 'Fail', Error: m.fail });
  });
});
