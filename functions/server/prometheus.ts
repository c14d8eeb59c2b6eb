import { Counter, Histogram, Registry } from 'prom-client';
import {
  SERVICE_COUNTERS,
  SERVICE_DURATIONS,
  snakeName,
  type CounterName,
  type DurationName,
  type ServiceMetrics,
} from '../../shared/service/metrics.js';

/**
 * The local server's metrics: the service's counters (shared/service/metrics.ts) in a prom-client
 * registry of their own, served as Prometheus text at `GET /metrics` (metrics-endpoint.ts). Names are
 * `wsp_<snake_case>_total` for counters and `wsp_<snake_case>_seconds` for durations (a histogram).
 * Counts live in this process: a restart starts them at zero, as Prometheus expects of a counter.
 */

/** Setup takes seconds (warm start) to many minutes (a cold `npm install`). */
const SETUP_BUCKETS_SECONDS = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800];

export interface PrometheusMetrics {
  /** What the service is given (ServiceDeps.metrics). */
  metrics: ServiceMetrics;
  /** The exposition text and its content type (`text/plain; version=0.0.4`). */
  scrape(): Promise<{ contentType: string; text: string }>;
}

export function prometheusMetrics(): PrometheusMetrics {
  const registry = new Registry();
  const counters = new Map<CounterName, Counter>();
  for (const [name, spec] of Object.entries(SERVICE_COUNTERS) as [
    CounterName,
    (typeof SERVICE_COUNTERS)[CounterName],
  ][]) {
    const dimension = 'dimension' in spec ? spec.dimension : undefined;
    counters.set(
      name,
      new Counter({
        name: `wsp_${snakeName(name)}_total`,
        help: spec.help,
        labelNames: dimension ? [dimension] : [],
        registers: [registry],
      }),
    );
  }
  const durations = new Map<DurationName, Histogram>();
  for (const [name, spec] of Object.entries(SERVICE_DURATIONS) as [DurationName, { help: string }][]) {
    durations.set(
      name,
      new Histogram({
        name: `wsp_${snakeName(name)}_seconds`,
        help: spec.help,
        buckets: SETUP_BUCKETS_SECONDS,
        registers: [registry],
      }),
    );
  }
  return {
    metrics: {
      count(counter, value) {
        const spec = SERVICE_COUNTERS[counter];
        const c = counters.get(counter)!;
        if ('dimension' in spec) c.inc({ [spec.dimension]: value ?? 'unknown' });
        else c.inc();
      },
      seconds(duration, value) {
        durations.get(duration)!.observe(value);
      },
    },
    async scrape() {
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
  };
}
