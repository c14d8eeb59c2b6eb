import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';

/**
 * API Gateway HTTP API (payload format 2.0) events as the service sends them: header names lower-
 * cased, raw path and query string, text bodies as-is (JSON is not base64-encoded by API Gateway).
 */
export function apiEvent(
  method: string,
  url: string,
  options: { headers?: Record<string, string>; body?: string | Buffer; base64?: boolean; stage?: string } = {},
): APIGatewayProxyEventV2 {
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const rawQueryString = q === -1 ? '' : url.slice(q + 1);
  const headers = Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const stage = options.stage ?? '$default';
  const now = new Date();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: stage === '$default' ? rawPath : `/${stage}${rawPath}`,
    rawQueryString,
    headers: { host: 'abc123.execute-api.eu-west-1.amazonaws.com', ...headers },
    ...(rawQueryString ? { queryStringParameters: Object.fromEntries(new URLSearchParams(rawQueryString)) } : {}),
    requestContext: {
      accountId: '111111111111',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'vitest' },
      requestId: randomBytes(8).toString('hex'),
      routeKey: '$default',
      stage,
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(options.body !== undefined
      ? {
          body: options.base64 ? Buffer.from(options.body).toString('base64') : options.body.toString(),
          isBase64Encoded: options.base64 === true,
        }
      : { isBase64Encoded: false }),
  };
}

/** A Lambda context good enough for middy (no getRemainingTimeInMillis: no early-timeout timer). */
export function lambdaContext(name = 'wsp-test'): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:eu-west-1:111111111111:function:${name}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomBytes(8).toString('hex'),
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: 'test',
    getRemainingTimeInMillis: undefined as unknown as () => number,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

export interface ParsedResult {
  status: number;
  headers: Record<string, string>;
  body: any;
  text: string;
  /** The body's bytes (binary answers: a file, a tar). */
  bytes: Buffer;
}

/** The handler's structured result, with the body parsed as JSON. */
export function parseResult(result: APIGatewayProxyStructuredResultV2 | string | undefined): ParsedResult {
  if (result === undefined || typeof result === 'string')
    throw new Error(`handler returned a bare ${typeof result}, expected a structured result`);
  const bytes = Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8');
  const text = bytes.toString('utf8');
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return {
    status: result.statusCode ?? 200,
    headers: (result.headers ?? {}) as Record<string, string>,
    body,
    text,
    bytes,
  };
}
