import type { WorkspaceHandle } from '../contract/backend.js';
import type { BackendRef } from '../contract/workspace.js';

/**
 * `open(ref)` of every backend: the handle `open` builds, or — when the ref cannot be parsed — a handle
 * whose every call rejects with that error. `open` does no I/O and never throws, so a caller's
 * `.catch()` on the call also catches a malformed ref (the state store is not trusted blindly).
 */
export function openOrReject(ref: BackendRef, open: () => WorkspaceHandle): WorkspaceHandle {
  try {
    return open();
  } catch (error) {
    const reject = (): Promise<never> => Promise.reject(error);
    return {
      ref,
      commands: {
        start: reject,
        status: reject,
        wait: reject,
        read: reject,
        kill: reject,
        signal: reject,
        resize: reject,
        killAll: reject,
        writeStdin: reject,
      },
      files: { putTransferFile: reject, removeTransferFile: reject, putDirectory: reject },
      snapshots: { take: reject, restore: reject },
      usage: reject,
    };
  }
}
