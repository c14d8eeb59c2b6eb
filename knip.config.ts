import type { KnipConfig } from 'knip';

/** knip: unused files, exports and dependencies (`npm run lint`). */
const config: KnipConfig = {
  // Also entries, found by knip itself (listing them again only earns a "redundant" hint): functions/cli/wsp.ts
  // (package.json bin), infra/app.ts (cdk.json's app, aws-cdk plugin), test/support/prepare.mjs (the test
  // script), vitest.config.ts (vitest plugin).
  entry: [
    'functions/server/main.ts',
    // The Lambda handlers: infra/stacks/stateless-stack.ts HANDLERS (bundled by path, never imported).
    'functions/lambda/{api,worker,task-events,janitor,authorizer}.ts',
    // The local command supervisor: a process of its own, started by path (supervisor/client.ts).
    'shared/backends/local/supervisor/daemon.ts',
    'bench/*.ts',
    'test/**/*.test.ts',
  ],
  project: ['shared/**', 'functions/**', 'infra/**', 'bench/**', 'test/**'],
  // A type or interface named in its own file's exported signatures stays exported (callers may name it).
  ignoreExportsUsedInFile: { interface: true, type: true },
  // Host tools the tests and benches run (Debian packages .ci/run installs), not npm packages; and wsp
  // itself, run from PATH as installed (test/support/installed-cli.ts).
  ignoreBinaries: ['bwrap', 'java', 'nsenter', 'script', 'setpriv', 'unshare', 'wsp'],
};

export default config;
