import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configureLambda, lambdaContainer } from '../../functions/lambda/compose.js';
import { handler as api } from '../../functions/lambda/api.js';
import { startEmbeddedDynamo, type EmbeddedDynamo } from '../../shared/state/embedded.js';
import { apiEvent, lambdaContext, parseResult } from './events.js';

// LocalStack serves every AWS service on one port and routes by the request (X-Amz-Target for
// JSON protocols). This stand-in does the same on 127.0.0.1: DynamoDB calls go to a real
// DynamoDB-protocol server (dynalite), Secrets Manager's GetSecretValue answers from a map. With
// only AWS_ENDPOINT_URL set (the README's LocalStack recipe), the Lambda composition reaches both.

const SECRET = { Name: 'wsp/git', SecretString: JSON.stringify({ token: 'ls-token-value' }) };
let dynamo: EmbeddedDynamo;
let server: http.Server;
let endpoint: string;
const seen: string[] = [];
const saved: Record<string, string | undefined> = {};
let dataDir: string;

beforeAll(async () => {
  dynamo = await startEmbeddedDynamo();
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      seen.push(target);
      if (target.startsWith('secretsmanager.')) {
        const { SecretId } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { SecretId: string };
        res.setHeader('content-type', 'application/x-amz-json-1.1');
        if (target === 'secretsmanager.GetSecretValue' && SecretId === SECRET.Name) {
          res.end(
            JSON.stringify({
              ...SECRET,
              ARN: `arn:aws:secretsmanager:eu-west-1:000000000000:secret:${SECRET.Name}`,
              VersionId: 'v1',
              VersionStages: ['AWSCURRENT'],
            }),
          );
        } else {
          res.statusCode = 400;
          res.end(
            JSON.stringify({
              __type: 'ResourceNotFoundException',
              message: "Secrets Manager can't find the specified secret.",
            }),
          );
        }
        return;
      }
      // Everything else is DynamoDB: forward as-is.
      const upstream = http.request(
        dynamo.endpoint,
        { socketPath: dynamo.socketPath, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 500, up.headers);
          up.pipe(res);
        },
      );
      upstream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-ls-'));
  // The SDK reads these from the process environment when a client is built.
  for (const [k, v] of Object.entries({
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'eu-west-1',
  })) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
});

afterAll(async () => {
  await configureLambda({});
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await dynamo.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('AWS_ENDPOINT_URL points the Lambda composition at one LocalStack-style endpoint', () => {
  it('DynamoDB (state store) and Secrets Manager (git credentials) both go there', async () => {
    await configureLambda({
      env: { ...process.env, TABLE_NAME: 'wsp-ls', WSP_ENSURE_TABLE: '1', WSP_DATA_DIR: dataDir },
    });
    const listed = parseResult(await api(apiEvent('GET', '/workspaces'), lambdaContext()));
    expect(listed.status, listed.text).toBe(200);
    expect(listed.body).toEqual({ workspaces: [] });
    expect(seen).toEqual(expect.arrayContaining(['DynamoDB_20120810.CreateTable', 'DynamoDB_20120810.Query']));

    const { deps } = await lambdaContainer();
    expect(await deps.secrets.resolve('secretsmanager:wsp/git#token')).toBe('ls-token-value');
    expect(seen).toContain('secretsmanager.GetSecretValue');
    const missing = await deps.secrets.resolve('secretsmanager:wsp/nope').catch((e: unknown) => e as Error);
    expect((missing as Error).message).toContain('secretsmanager:wsp/nope');
  });
});
