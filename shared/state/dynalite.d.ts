// dynalite ships no types; this covers the one call shared/state/embedded.ts makes.
declare module 'dynalite' {
  interface DynaliteOptions {
    /** LevelDB directory; in-memory when unset. */
    path?: string;
    createTableMs?: number;
    deleteTableMs?: number;
    updateTableMs?: number;
    maxItemSizeKb?: number;
    verbose?: boolean;
    debug?: boolean;
  }
  function dynalite(options?: DynaliteOptions): import('node:http').Server;
  export default dynalite;
}
