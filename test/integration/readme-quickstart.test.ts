import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The README's quickstart, run exactly as written (bash, from the repo root). Only the data dir is
// moved to a fresh temp dir through WSP_DATA_DIR, which both the provider and the CLI read.
const ROOT = path.resolve(import.meta.dirname, '../..');

function quickstartBlock(): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const m = /<!-- quickstart:begin -->\s*```sh\n([\s\S]*?)```\s*<!-- quickstart:end -->/.exec(readme);
  if (!m) throw new Error('README has no quickstart block between the markers');
  return m[1]!;
}

// Twice: with a data dir every uid can reach, and under a parent no other uid may traverse — what a
// checkout under /root (0700) gives the default data dir (`.wsp` in the checkout) — which must work
// with nothing to chmod.
describe('README quickstart', () => {
  it.each([
    ['under traversable parents', false],
    ['under a 0700 parent, as a checkout in /root', true],
  ])(
    'works exactly as written, the data dir %s',
    async (_name, closed) => {
      const top = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-quickstart-'));
      fs.chmodSync(top, closed ? 0o700 : 0o711);
      const dataDir = closed ? path.join(top, 'data') : top;
      const script = `set -euo pipefail\n${quickstartBlock()}`;
      const child = spawn('bash', ['-c', script], {
        cwd: ROOT,
        env: { ...process.env, WSP_DATA_DIR: dataDir, WSP_TOKEN: '', WSP_URL: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      try {
        expect({ code, err: code === 0 ? '' : err + fs.readFileSync('/tmp/wsp-demo.log', 'utf8') }).toEqual({
          code: 0,
          err: '',
        });
        expect(out).toMatch(/^first$/m); // log after setup
        expect(out).toMatch(/^second\nfirst$/m); // log after fetch + checkout
        expect(out).toContain('notes.txt'); // changes
        expect(err).toMatch(/cache miss/); // setup progress on stderr
      } finally {
        // Workspace dirs put outside the data dir (the closed parent) are recorded there.
        const moved = path.join(dataDir, 'local', 'workspaces-at');
        if (fs.existsSync(moved)) fs.rmSync(fs.readFileSync(moved, 'utf8').trim(), { recursive: true, force: true });
        fs.rmSync(top, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
