import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { privateDir } from '../../shared/lib/private-dir.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-private-dir-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('privateDir', () => {
  it('creates the directory 0700', () => {
    const dir = privateDir(tmp, 'new');
    expect(dir).toBe(path.join(tmp, 'new'));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('narrows an existing, wider directory to 0700 (mkdir alone would leave it open)', () => {
    fs.mkdirSync(path.join(tmp, 'old'), { mode: 0o777 });
    fs.chmodSync(path.join(tmp, 'old'), 0o777);
    expect(fs.statSync(privateDir(tmp, 'old')).mode & 0o777).toBe(0o700);
  });
});
