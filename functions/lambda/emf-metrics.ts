import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { pascalName, SERVICE_COUNTERS, type ServiceMetrics } from '../../shared/service/metrics.js';

/**
 * The service's counters (shared/service/metrics.ts) as CloudWatch metrics in EMF, through Powertools
 * Metrics: `workspacesCreated` → `WorkspacesCreated` (Count), `setupDuration` → `SetupDuration`
 * (Seconds). Plain counters are stored on the shared instance and flushed once per invocation by the
 * logMetrics middleware (one EMF line); a counter split by a dimension (commands by state, failures by
 * step) is emitted at once as a single metric carrying that dimension beside `service`, because an
 * EMF line has one dimension set for all of its metrics.
 */
export function emfMetrics(metrics: Metrics): ServiceMetrics {
  return {
    count(counter, value) {
      const spec = SERVICE_COUNTERS[counter];
      if (!('dimension' in spec)) {
        metrics.addMetric(pascalName(counter), MetricUnit.Count, 1);
        return;
      }
      const single = metrics.singleMetric();
      single.addDimension(spec.dimension, value ?? 'unknown');
      single.addMetric(pascalName(counter), MetricUnit.Count, 1);
    },
    seconds(duration, value) {
      metrics.addMetric(pascalName(duration), MetricUnit.Seconds, value);
    },
  };
}
