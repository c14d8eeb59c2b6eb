import type { CacheEntryRecord } from '../contract/workspace.js';
import { errorFields } from '../log.js';
import type { ServiceDeps } from './deps.js';

export interface EvictionReport {
  evicted: { key: string; reason: string }[];
}

/**
 * Keep the provisioning cache within its limits (config.cache): entries older than maxAgeSeconds
 * since last use go first, then least-recently-used entries until both maxEntries and maxBytes hold.
 * Only ready or failed entries are evicted (a building one belongs to its builder). Each removal is a
 * conditional delete on the version read, so an entry used or rebuilt meanwhile is left alone.
 */
export async function evictCache(deps: ServiceDeps, now = new Date()): Promise<EvictionReport> {
  const { config, state, backend, log } = deps;
  const report: EvictionReport = { evicted: [] };
  const entries = (await state.listCacheEntries()).filter((e) => e.status !== 'building');
  const byLastUse = [...entries].sort((a, b) => Date.parse(a.lastUsedAt) - Date.parse(b.lastUsedAt));
  const keep = new Set(byLastUse.map((e) => e.key));
  const victims: { entry: CacheEntryRecord; reason: string }[] = [];

  for (const e of byLastUse) {
    const ageSeconds = (now.getTime() - Date.parse(e.lastUsedAt)) / 1000;
    if (e.status === 'failed') victims.push({ entry: e, reason: 'failed build' });
    else if (ageSeconds > config.cache.maxAgeSeconds)
      victims.push({ entry: e, reason: `unused for ${Math.round(ageSeconds)} s` });
    else continue;
    keep.delete(e.key);
  }
  const live = () => byLastUse.filter((e) => keep.has(e.key));
  while (live().length > config.cache.maxEntries) {
    const e = live()[0]!;
    victims.push({ entry: e, reason: `more than ${config.cache.maxEntries} entries` });
    keep.delete(e.key);
  }
  const bytes = () => live().reduce((n, e) => n + (e.sizeBytes ?? 0), 0);
  while (live().length > 0 && bytes() > config.cache.maxBytes) {
    const e = live()[0]!;
    victims.push({ entry: e, reason: `cache above ${config.cache.maxBytes} bytes` });
    keep.delete(e.key);
  }

  for (const { entry, reason } of victims) {
    try {
      await state.deleteCacheEntry(entry.key, entry.version);
      if (entry.snapshot) await backend.snapshots.delete(entry.snapshot);
      report.evicted.push({ key: entry.key, reason });
      log.info('cache entry evicted', { cacheKey: entry.key, reason });
    } catch (error) {
      log.warn('cache entry not evicted (changed meanwhile?)', { cacheKey: entry.key, ...errorFields(error) });
    }
  }
  return report;
}
