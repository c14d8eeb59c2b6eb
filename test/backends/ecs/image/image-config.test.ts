import { describe, expect, it } from 'vitest';
import { appendLayerToConfig } from '../../../../shared/backends/ecs/image/image-config.js';
import { RegistryError } from '../../../../shared/backends/ecs/image/errors.js';

const created = new Date('2026-03-04T05:06:07Z');
const diffId = `sha256:${'b'.repeat(64)}`;

describe('appendLayerToConfig', () => {
  it('appends the diff_id and a history entry, merges labels, sets created, keeps everything else', () => {
    const base = {
      architecture: 'amd64',
      os: 'linux',
      created: '2026-01-01T00:00:00Z',
      config: { Cmd: ['/bin/bash'], Labels: { keep: 'me', over: 'old' } },
      rootfs: { type: 'layers', diff_ids: [`sha256:${'a'.repeat(64)}`] },
      history: [
        { created: '2026-01-01T00:00:00Z', comment: 'Imported from -' },
        { created_by: 'ENV X=1', empty_layer: true },
      ],
    };
    const frozen = structuredClone(base);
    const out = appendLayerToConfig(base, {
      diffId,
      created,
      createdBy: 'wsp cache k1',
      labels: { over: 'new', added: 'yes' },
    });
    expect(out).toEqual({
      architecture: 'amd64',
      os: 'linux',
      created: '2026-03-04T05:06:07.000Z',
      config: { Cmd: ['/bin/bash'], Labels: { keep: 'me', over: 'new', added: 'yes' } },
      rootfs: { type: 'layers', diff_ids: [`sha256:${'a'.repeat(64)}`, diffId] },
      history: [...base.history, { created: '2026-03-04T05:06:07.000Z', created_by: 'wsp cache k1', comment: 'wsp' }],
    });
    expect(base).toEqual(frozen);
  });

  it('a base without (consistent) history gets one placeholder per base layer, so history matches the layers', () => {
    const out = appendLayerToConfig(
      {
        created: '2026-01-01T00:00:00Z',
        rootfs: { type: 'layers', diff_ids: [`sha256:${'1'.repeat(64)}`, `sha256:${'2'.repeat(64)}`] },
      },
      { diffId, created },
    );
    expect(out.history?.filter((h) => !h.empty_layer)).toHaveLength(3);
    expect(out.history?.at(-1)?.created_by).toBe('wsp: workspace cache layer');
    expect(out.config).toBeUndefined();
  });

  it('rejects something that is not an image config', () => {
    expect(() => appendLayerToConfig({ rootfs: { type: 'other' } }, { diffId, created })).toThrow(RegistryError);
    expect(() => appendLayerToConfig(null, { diffId, created })).toThrow(RegistryError);
  });
});
