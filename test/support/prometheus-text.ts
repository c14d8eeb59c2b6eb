/**
 * Prometheus text exposition (format 0.0.4) → `{ 'name{label="v"}': value }`, labels sorted, so a
 * test can check exact counter values. Only what prom-client writes: no timestamps, no escapes in names.
 */
export function parsePrometheusText(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    const [, name, labels, value] = match;
    const sorted = labels
      ? [...labels.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
          .map(([, k, v]) => `${k}="${v}"`)
          .sort()
          .join(',')
      : '';
    samples.set(sorted ? `${name}{${sorted}}` : name!, Number(value));
  }
  return samples;
}
