import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  claimHostUid,
  HOST_UID_BASE,
  releaseHostUid,
  sweepStaleHostUids,
} from '../../../shared/backends/local/host-uids.js';

// Host uids are a host-wide resource: a create claims one without reading the claims already there
// (it must not grow with them), and stale claims (their workspace dir deleted without destroy) are
// swept so their uids come back.

let root: string;
let registry: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-uids-'));
  registry = path.join(root, 'registry');
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const dir = (name: string): string => {
  const d = path.join(root, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
};
const claimOf = (uid: number) =>
  JSON.parse(fs.readFileSync(path.join(registry, String(uid)), 'utf8')) as { workspaceDir: string };

describe('host uid claims', () => {
  it('hands out distinct uids and records each claim; release frees it for the same dir only', async () => {
    const a = await claimHostUid(registry, dir('a'));
    const b = await claimHostUid(registry, dir('b'));
    expect(a).toBeGreaterThan(HOST_UID_BASE);
    expect(b).not.toBe(a);
    expect(claimOf(a).workspaceDir).toBe(path.join(root, 'a'));
    await releaseHostUid(registry, a, path.join(root, 'other'));
    expect(fs.existsSync(path.join(registry, String(a)))).toBe(true);
    await releaseHostUid(registry, a, path.join(root, 'a'));
    expect(fs.existsSync(path.join(registry, String(a)))).toBe(false);
    expect(await claimHostUid(registry, dir('c'))).toBe(a);
  });

  it('a claim is never reused while it stands, even a stale one; the sweep frees stale ones and keeps live and unreadable ones', async () => {
    const live = await claimHostUid(registry, dir('live'));
    const stale = await claimHostUid(registry, dir('gone'));
    const garbage = await claimHostUid(registry, dir('garbage'));
    fs.writeFileSync(path.join(registry, String(garbage)), 'not json');
    fs.rmSync(path.join(root, 'gone'), { recursive: true });
    const next = await claimHostUid(registry, dir('next'));
    expect([live, stale, garbage]).not.toContain(next);
    expect(await sweepStaleHostUids(registry)).toBe(1);
    expect(fs.existsSync(path.join(registry, String(stale)))).toBe(false);
    expect(claimOf(live).workspaceDir).toBe(path.join(root, 'live'));
    expect(fs.readFileSync(path.join(registry, String(garbage)), 'utf8')).toBe('not json');
    expect(await claimHostUid(registry, dir('again'))).toBe(stale);
  });

  it('a registry that does not exist yet sweeps to nothing', async () => {
    expect(await sweepStaleHostUids(path.join(root, 'none'))).toBe(0);
  });
});
