import middy from '@middy/core';
import type { APIGatewayRequestAuthorizerEventV2, APIGatewaySimpleAuthorizerResult } from 'aws-lambda';
import { errorFields } from '../../shared/log.js';
import { authorizationMatches, parseKeyHashes } from './api-keys.js';
import { lambdaLogger, observed } from './powertools.js';
import { powertoolsLog } from './powertools-log.js';

/**
 * HTTP API Lambda authorizer (payload 2.0, simple responses): allows a request whose
 * `Authorization: Bearer <key>` hashes (sha256) to one of the configured hashes. Hashes come from
 * `WSP_API_KEY_HASHES` (comma-separated hex), read once per container. A malformed hash list denies
 * everything and logs why — an authorizer that throws would answer 500 instead of 403.
 * Deliberately tiny: it imports neither the service nor any AWS client (so it counts no metrics; its
 * log lines carry the request's API Gateway id, the same correlation_id as the api function's).
 */

const log = powertoolsLog(lambdaLogger);
let hashes: Buffer[] | undefined;

function configuredHashes(): Buffer[] {
  if (hashes === undefined) {
    try {
      hashes = parseKeyHashes(process.env.WSP_API_KEY_HASHES);
    } catch (error) {
      log.error('authorizer misconfigured; denying every request', errorFields(error));
      hashes = [];
    }
    if (hashes.length === 0) log.warn('no API key hashes configured; denying every request');
  }
  return hashes;
}

/** The decision for one request, given the accepted hashes. */
export function authorize(
  event: Pick<APIGatewayRequestAuthorizerEventV2, 'headers'>,
  accepted: readonly Buffer[],
): APIGatewaySimpleAuthorizerResult {
  const headers = event.headers ?? {};
  // HTTP API lower-cases header names in payload 2.0; accept any case anyway.
  const authorization =
    headers['authorization'] ?? Object.entries(headers).find(([k]) => k.toLowerCase() === 'authorization')?.[1];
  return { isAuthorized: accepted.length > 0 && authorizationMatches(authorization, accepted) };
}

export const handler = middy<APIGatewayRequestAuthorizerEventV2, APIGatewaySimpleAuthorizerResult>()
  .use(
    observed<APIGatewayRequestAuthorizerEventV2, APIGatewaySimpleAuthorizerResult>(
      (event) => event.requestContext?.requestId,
      { metrics: false },
    ),
  )
  .handler(async (event) => authorize(event, configuredHashes()));
