import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeTestProvider, hostileBackends } from '../support/hostile-backends.js';
import { createUpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// Hiding work from `GET /changes` (issue 9, finding 5). The agent owns the repo's .git (index,
// config, info/), its ~/.gitconfig and every file, and uses each way git offers to look away. Every
// changed or added file must still be in the view, and `hidden` must say what git was told.
// The `changes` logic runs git inside the workspace, so it is tried on every backend.
const TOKEN = `hidden-${randomBytes(10).toString('hex')}`;

describe.each(hostileBackends())('changes cannot be blinded ($name backend)', ({ name, config, skip }) => {
  let root: string;
  let git: GitServer;
  let wsp: TestProvider;
  const env = `WSP_HIDDEN_TOKEN_${name.toUpperCase()}`;

  beforeAll(async () => {
    if (skip !== undefined) return;
    process.env[env] = TOKEN;
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-hidden-'));
    git = await startGitServer({ token: TOKEN, root });
    const files: Record<string, string> = { '.gitignore': 'node_modules/\n', 'README.md': '# app\n' };
    for (const name of ['skip', 'assume', 'binary', 'filtered', 'forged', 'crlf', 'plain'])
      files[`src/${name}.js`] = `export const ${name} = 1;\n`;
    createUpstreamRepo(root, 'app', files);
    wsp = await startTestProvider({
      ...config,
      repositories: [{ url: git.url('app'), path: 'app', credential: `env:${env}` }],
      // Setup leaves ignored content behind, as `npm install` does: it must not flood the view.
      setup: { script: 'mkdir -p app/node_modules/dep && echo dep > app/node_modules/dep/index.js' },
      workspace: { network: 'none' },
    });
  }, 120_000);

  afterAll(async () => {
    await closeTestProvider(wsp);
    await git?.close();
    if (root) fs.rmSync(root, { recursive: true, force: true });
    delete process.env[env];
  });

  async function run(id: string, script: string): Promise<void> {
    const r = await wsp.exec(id, script);
    expect(r, `${r.stdout?.data}\n${r.stderr?.data}`).toMatchObject({ state: 'exited', exitCode: 0 });
  }

  async function changes(id: string): Promise<any> {
    const r = await wsp.api('GET', `/workspaces/${id}/changes`);
    expect(r.status, r.text).toBe(200);
    expect(r.body.repos).toHaveLength(1);
    return r.body.repos[0];
  }

  const codes = (repo: any): Record<string, string> =>
    Object.fromEntries(repo.status.map((e: any) => [e.path, e.code]));
  const hows = (repo: any): Record<string, string> => Object.fromEntries(repo.hidden.map((h: any) => [h.path, h.how]));

  it.skipIf(skip !== undefined)(
    'a clean workspace shows nothing, setup output (ignored at the baseline) included',
    async () => {
      const ws = await wsp.setup();
      const repo = await changes(ws.id);
      expect(repo.status).toEqual([]);
      expect(repo.hidden).toEqual([]);
      expect(repo.diff).toBe('');
      await wsp.api('DELETE', `/workspaces/${ws.id}`);
    },
    120_000,
  );

  it.skipIf(skip !== undefined)(
    'index flags, ignore rules, attributes, filters, a forged index and a lying config all fail to hide',
    async () => {
      const ws = await wsp.setup();
      await run(
        ws.id,
        [
          'set -e',
          'cd app',
          // Index flags.
          'echo "steal()" >> src/skip.js && git update-index --skip-worktree src/skip.js',
          'echo "steal()" >> src/assume.js && git update-index --assume-unchanged src/assume.js',
          // Ignore rules: info/exclude, a .gitignore rule added (the .gitignore ignoring itself too), a global excludesFile.
          'echo secret > exfil-info.sh && echo exfil-info.sh >> .git/info/exclude',
          'echo secret > exfil-gi.sh && printf "exfil-gi.sh\\n.gitignore\\nnode_modules/\\n" > .gitignore',
          'echo secret > exfil-global.sh && echo exfil-global.sh > ~/.gitignore-global && git config --global core.excludesFile ~/.gitignore-global',
          'mkdir -p node_modules/evil && echo "steal()" > node_modules/evil/index.js',
          // Attributes: no diff for one file; a clean filter that answers the old content for another.
          'echo "steal()" >> src/binary.js && echo "src/binary.js -diff" > .gitattributes',
          'echo "steal()" >> src/filtered.js && echo "src/filtered.js filter=lie" > .git/info/attributes',
          `git config filter.lie.clean "printf 'export const filtered = 1;\\\\n'"`,
          // Stat shortcuts: a same-size edit with the old mtime, the agent's git told to trust size and mtime only.
          'git config core.checkStat minimal && git config core.trustctime false',
          'touch -r src/forged.js ../stamp && sed -i s/1/9/ src/forged.js && touch -r ../stamp src/forged.js',
          // Lying config: an fsmonitor hook that reports nothing changed, no stat checks, modes ignored.
          'printf "#!/bin/sh\\nexit 0\\n" > ../fsmon.sh && chmod +x ../fsmon.sh && git config core.fsmonitor "$PWD/../fsmon.sh"',
          'git config core.fileMode false && chmod +x src/plain.js',
          // Line endings: LF turned into CRLF, which autocrlf would clean back to the baseline's bytes.
          "printf 'export const crlf = 1;\\r\\n' > src/crlf.js && git config core.autocrlf true",
          // A zeroed index entry makes git hash the file again, through the filter / CRLF conversion, and record it as clean.
          'for f in src/filtered.js src/crlf.js; do git update-index --cacheinfo "100644,$(git rev-parse HEAD:$f),$f"; done',
          'git update-index -q --refresh || true',
          // The agent's own git now sees none of the edits to tracked files.
          'git status --porcelain > ../own-status',
        ].join('\n'),
      );

      const repo = await changes(ws.id);
      const status = codes(repo);
      const hidden = hows(repo);
      for (const p of [
        'src/skip.js',
        'src/assume.js',
        'src/binary.js',
        'src/filtered.js',
        'src/forged.js',
        'src/plain.js',
        'src/crlf.js',
        '.gitignore',
      ]) {
        expect(status[p], `${p} in ${JSON.stringify(repo.status)}`).toMatch(/M/);
      }
      for (const p of ['exfil-info.sh', 'exfil-global.sh', '.gitattributes']) expect(status[p], p).toBe('??');
      expect(status['exfil-gi.sh']).toBe('!!');
      // Ignored at the baseline by the project's own rule: not flooded into the view.
      expect(Object.keys(status).filter((p) => p.startsWith('node_modules'))).toEqual([]);

      expect(hidden).toMatchObject({
        'src/skip.js': 'skip-worktree',
        'src/assume.js': 'assume-unchanged',
        'exfil-info.sh': 'ignored',
        'exfil-gi.sh': 'ignored',
        'src/binary.js': 'attributes',
        'src/filtered.js': 'attributes',
      });
      // The agent's own git was indeed blinded to these (the attack is real).
      const own = (await wsp.exec(ws.id, 'cat ~/workspace/own-status')).stdout.data;
      for (const p of ['skip', 'assume', 'filtered', 'forged', 'plain', 'crlf'])
        expect(own).not.toContain(`src/${p}.js`);

      // The diff shows the text of every hidden edit, the -diff file included.
      for (const p of ['skip', 'assume', 'binary', 'filtered', 'forged', 'crlf'])
        expect(repo.diff).toContain(`diff --git a/src/${p}.js b/src/${p}.js`);
      expect(repo.diff.match(/^\+steal\(\)$/gm)).toHaveLength(4);
      expect(repo.diff).toContain('+export const forged = 9;');
      expect(repo.diff).toContain('+export const crlf = 1;\r');
      expect(repo.diff).toContain('old mode 100644\nnew mode 100755');
      expect(repo.diff).not.toMatch(/Binary files/);

      // Reset still restores everything; afterwards nothing is listed or hidden.
      const reset = await wsp.api('POST', `/workspaces/${ws.id}/reset`, {});
      expect(reset.status, reset.text).toBe(200);
      const after = await changes(ws.id);
      expect(after.status).toEqual([]);
      expect(after.hidden).toEqual([]);
      await wsp.api('DELETE', `/workspaces/${ws.id}`);
    },
    120_000,
  );

  it.skipIf(skip !== undefined)(
    'a replace ref does not stand in for the baseline commit',
    async () => {
      const ws = await wsp.setup();
      await run(
        ws.id,
        [
          'set -e',
          'cd app',
          'git -c user.name=a -c user.email=a@b commit -q --allow-empty -m x',
          'echo "steal()" >> README.md',
          // A replacement for the baseline commit whose tree already has the change.
          'base=$(git rev-parse HEAD~1)',
          'tree=$(git add README.md && git write-tree) && git reset -q',
          'fake=$(git -c user.name=a -c user.email=a@b commit-tree "$tree" -m fake) && git replace "$base" "$fake"',
          // The agent's own git now diffs the baseline as if nothing had changed (set -e: the attack is real).
          'git diff --quiet "$base" -- README.md',
        ].join('\n'),
      );
      const repo = await changes(ws.id);
      expect(codes(repo)['README.md']).toMatch(/M/);
      expect(repo.diff).toMatch(/^\+steal\(\)$/m);
      await wsp.api('DELETE', `/workspaces/${ws.id}`);
    },
    120_000,
  );
});
