import { RegistryError } from './errors.js';

/** The image config fields we touch (everything else is carried over verbatim). */
export interface ImageConfig {
  created?: string;
  config?: { Labels?: Record<string, string> | null; [key: string]: unknown } | null;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
  [key: string]: unknown;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface LayerAddition {
  /** sha256 of the new layer's uncompressed tar */
  diffId: string;
  created: Date;
  /** The history entry's created_by; default 'wsp: workspace cache layer'. */
  createdBy?: string;
  /** Merged over the base's Labels. */
  labels?: Record<string, string>;
}

/**
 * The base config with one layer appended: rootfs.diff_ids + diffId, one history entry (history
 * must keep one non-empty entry per layer, so a base without history gets placeholder entries),
 * labels merged, `created` set. Pure; the base object is not modified.
 */
export function appendLayerToConfig(base: unknown, add: LayerAddition): ImageConfig {
  const cfg = structuredClone(base) as ImageConfig;
  if (!cfg || typeof cfg !== 'object' || cfg.rootfs?.type !== 'layers' || !Array.isArray(cfg.rootfs.diff_ids)) {
    throw new RegistryError('base image config has no rootfs.diff_ids; not an image config');
  }
  const created = add.created.toISOString();
  const baseLayers = cfg.rootfs.diff_ids.length;
  let history = Array.isArray(cfg.history) ? cfg.history : [];
  if (history.filter((h) => !h.empty_layer).length !== baseLayers) {
    // Missing or inconsistent history: one placeholder per base layer keeps `docker history` sane.
    history = [
      ...history.filter((h) => h.empty_layer),
      ...cfg.rootfs.diff_ids.map(() => ({ created: cfg.created ?? created, comment: 'base layer' })),
    ];
  }
  cfg.history = [...history, { created, created_by: add.createdBy ?? 'wsp: workspace cache layer', comment: 'wsp' }];
  cfg.rootfs = { type: 'layers', diff_ids: [...cfg.rootfs.diff_ids, add.diffId] };
  cfg.created = created;
  if (add.labels && Object.keys(add.labels).length > 0) {
    const inner = cfg.config ?? {};
    inner.Labels = { ...(inner.Labels ?? {}), ...add.labels };
    cfg.config = inner;
  }
  return cfg;
}
