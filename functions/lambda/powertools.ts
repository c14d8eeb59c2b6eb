import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { MetricsOptions } from '@aws-lambda-powertools/metrics/types';
import type { MiddlewareObj } from '@middy/core';
import type { Context } from 'aws-lambda';

/**
 * Logs and metrics of the Lambda functions, the AWS way: Powertools for AWS Lambda (TypeScript).
 *
 * One Logger and one Metrics per execution environment, shared by the handler and the container it
 * composes once (compose.ts gives the service this Logger through powertoolsLog, and these Metrics
 * through emfMetrics), so what the service logs and counts belongs to the invocation running it.
 * Every handler runs `observed(...)`:
 * - injectLambdaContext: each line carries the Lambda context (function_name, function_request_id,
 *   cold_start, …); the event itself is never logged (logEvent: false whatever
 *   POWERTOOLS_LOGGER_LOG_EVENT says: an API event carries the caller's bearer key), and the keys of
 *   one invocation are cleared after it (resetKeys).
 * - a correlation id per invocation (`correlation_id`), chosen by the handler: API Gateway's request
 *   id for HTTP, the work's id for the worker, the event's id for EventBridge.
 * - logMetrics: what the service counted is flushed as one EMF line per invocation (namespace `wsp`,
 *   dimension `service`), with a `ColdStart` metric on an environment's first invocation.
 */

const METRICS_NAMESPACE = 'wsp';
const SERVICE_NAME = 'wsp';

export const lambdaLogger = new Logger({ serviceName: SERVICE_NAME });

/**
 * Powertools Metrics' own messages go to the Logger. "No application metrics to publish" is the normal
 * case for most requests here (a GET counts nothing), so it is debug, not a warning on every invocation.
 */
const metricsDiagnostics: NonNullable<MetricsOptions['logger']> = {
  debug: (...content) => lambdaLogger.debug(String(content[0])),
  info: (...content) => lambdaLogger.info(String(content[0])),
  warn: (...content) => {
    const message = String(content[0]);
    if (message.startsWith('No application metrics to publish')) lambdaLogger.debug(message);
    else lambdaLogger.warn(message);
  },
  error: (...content) => lambdaLogger.error(String(content[0])),
};

export const lambdaMetrics = new Metrics({
  namespace: METRICS_NAMESPACE,
  serviceName: SERVICE_NAME,
  logger: metricsDiagnostics,
});

/** The correlation id of one invocation; undefined: the Lambda request id stands in. */
export type CorrelationId<E> = (event: E) => string | undefined;

/**
 * The middlewares every handler uses (see above), in order: context into the logger, the correlation
 * id, metrics flushed after the handler (and after an error). `metrics: false` for a handler that runs
 * no service code (the authorizer): nothing to flush, no cold-start metric of its own.
 */
export function observed<E, R>(
  correlationId: CorrelationId<E>,
  options: { metrics?: boolean } = {},
): MiddlewareObj<E, R, Error, Context>[] {
  const correlation: MiddlewareObj<E, R, Error, Context> = {
    before: (request) => {
      lambdaLogger.setCorrelationId(correlationId(request.event) ?? request.context.awsRequestId);
    },
  };
  const middlewares: MiddlewareObj<E, R, Error, Context>[] = [
    injectLambdaContext(lambdaLogger, { resetKeys: true, logEvent: false }) as MiddlewareObj<E, R, Error, Context>,
    correlation,
  ];
  if (options.metrics ?? true)
    middlewares.push(
      logMetrics(lambdaMetrics, { captureColdStartMetric: true }) as MiddlewareObj<E, R, Error, Context>,
    );
  return middlewares;
}

/** A string field of an event that may be anything (EventBridge's `id`, a job's ids), or undefined. */
export function eventField(event: unknown, ...path: string[]): string | undefined {
  let at: unknown = event;
  for (const key of path) {
    if (typeof at !== 'object' || at === null) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return typeof at === 'string' && at.length > 0 ? at.slice(0, 200) : undefined;
}
