import type { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import type { Logger } from '../../shared/log.js';

/**
 * The project's Logger (shared/log.ts) over a Powertools Logger, so shared code logs through
 * Powertools unchanged. `child` merges its fields into every line instead of making a Powertools
 * child: a Powertools child is a copy taken when it is made, and the container's loggers are made
 * once, before any invocation — the parent is the instance injectLambdaContext fills per invocation
 * (function_request_id, cold_start, correlation_id …), so every line carries the current invocation's.
 */
export function powertoolsLog(logger: PowertoolsLogger, base: Record<string, unknown> = {}): Logger {
  const fields = (extra?: Record<string, unknown>): Record<string, unknown> => ({ ...base, ...extra });
  return {
    info: (message, extra) => logger.info(message, fields(extra)),
    warn: (message, extra) => logger.warn(message, fields(extra)),
    error: (message, extra) => logger.error(message, fields(extra)),
    child: (extra) => powertoolsLog(logger, fields(extra)),
  };
}
