import { describe, expect, it } from 'vitest';
import { hashApiKey } from '../../functions/lambda/api-keys.js';
import { readLambdaSettings } from '../../functions/lambda/settings.js';
import { BadRequestError } from '../../shared/contract/errors.js';

describe('readLambdaSettings', () => {
  it('defaults: mode ecs, /tmp data dir, no embedded store, auth left to API Gateway', () => {
    const s = readLambdaSettings({});
    expect(s.config).toMatchObject({
      mode: 'ecs',
      dataDir: '/tmp/wsp',
      state: { embedded: false, tableName: 'wsp' },
      auth: { disabled: true },
    });
    expect(s).toMatchObject({
      instanceId: 'wsp-lambda',
      workerFunctionName: undefined,
      apiKeyHashes: [],
      ensureTable: false,
    });
  });

  it('reads the deployment env over the inline config', () => {
    const s = readLambdaSettings({
      WSP_CONFIG_JSON: JSON.stringify({
        mode: 'docker',
        setup: { script: 'make' },
        state: { tableName: 'from-config', region: 'us-west-2' },
      }),
      WSP_MODE: 'ecs',
      TABLE_NAME: 'wsp-prod',
      AWS_REGION: 'eu-west-1',
      WSP_INSTANCE_ID: 'wsp-prod',
      WSP_WORKER_FUNCTION: 'worker-fn',
      WSP_API_KEY_HASHES: hashApiKey('k'),
      WSP_ENSURE_TABLE: '1',
      WSP_DYNAMODB_ENDPOINT: 'http://127.0.0.1:8000',
    });
    expect(s.config).toMatchObject({
      mode: 'ecs',
      setup: { script: 'make' },
      state: { tableName: 'wsp-prod', region: 'eu-west-1', endpoint: 'http://127.0.0.1:8000', embedded: false },
    });
    expect(s).toMatchObject({ instanceId: 'wsp-prod', workerFunctionName: 'worker-fn', ensureTable: true });
    expect(s.apiKeyHashes).toHaveLength(1);
  });

  it('a bad setting is a BadRequestError naming it', () => {
    for (const [env, field] of [
      [{ WSP_CONFIG_JSON: '{nope' }, 'WSP_CONFIG_JSON'],
      [{ WSP_CONFIG_JSON: '[1]' }, 'WSP_CONFIG_JSON'],
      [{ WSP_CONFIG_JSON: '{"repositories":[{"url":"https://x/y.git","path":"../up"}]}' }, 'repositories[0].path'],
      [{ WSP_MODE: 'mainframe' }, 'mode'],
      [{ WSP_API_KEY_HASHES: 'short' }, 'WSP_API_KEY_HASHES'],
    ] as const) {
      let error: unknown;
      try {
        readLambdaSettings(env);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(env)).toBeInstanceOf(BadRequestError);
      expect(JSON.stringify((error as BadRequestError).details) + (error as Error).message).toContain(field);
    }
  });
});
