import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { toErrorResponse } from '../../shared/api/errors.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import type { Logger } from '../../shared/log.js';
import { lambdaContainer, type LambdaContainer } from './compose.js';
import { errorResult } from './http-event.js';

/**
 * Last resort for the HTTP handler: anything thrown outside dispatch() (which maps its own errors)
 * becomes our JSON error shape through the one mapping in shared/api/errors.ts — never middy's
 * default, never a stack trace.
 */
export function httpErrorShape(log: Logger): MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2> {
  return {
    onError: async (request) => {
      // middy aborts a handler shortly before the function's timeout with a TimeoutError: that is
      // the provider running out of time, not an internal fault to hide behind a 500.
      const error =
        request.error?.name === 'TimeoutError'
          ? new BackendUnavailableError(
              'the request did not finish within the function timeout; retry, or long-poll with a shorter waitMs',
              request.error,
            )
          : request.error;
      const { status, headers, body } = toErrorResponse(error, log);
      request.response = errorResult(status, body, headers);
    },
  };
}

/**
 * The container, or a 503 when it cannot be composed: a bad deployment setting (env, config) is
 * the operator's problem, not the caller's bad input, so it is never reported as a 400. The real
 * error goes to the log.
 */
export async function containerOr503(log: Logger): Promise<LambdaContainer> {
  try {
    return await lambdaContainer();
  } catch (error) {
    log.error('composition failed', {
      error: error instanceof Error ? error.message : String(error),
      errorName: error instanceof Error ? error.name : undefined,
    });
    throw new BackendUnavailableError(
      'the provider is not available (misconfigured or its state store is unreachable); see its logs',
      error,
    );
  }
}
