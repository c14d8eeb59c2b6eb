/**
 * Default limits every workspace gets when the config sets none (config `workspace.resources`), and
 * that a backend applies to a plan without them.
 *
 * pids: tasks (processes AND threads) of the whole workspace. A fork bomb stops here in milliseconds
 * instead of taking the host's pid space. 1024 leaves room for real work: a Node process runs ~11
 * threads, so a test runner with 16 workers, a dev server, a language server and a build together
 * stay in the low hundreds; a JVM build daemon uses ~50-100. Raise it per workspace if needed.
 */
export const DEFAULT_WORKSPACE_PIDS = 1024;
