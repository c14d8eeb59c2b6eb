import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';

/**
 * The backend of a mode this Lambda build does not contain (local and docker are never bundled into
 * a Lambda), or of an ecs deployment whose configuration is incomplete. Every
 * operation throws BackendUnavailableError (503) with one clear message; reads of the state store
 * (list, get) keep working because they never reach the backend.
 */
export function unavailableBackend(
  mode: string,
  message = `mode ${mode} is not available in this build`,
): WorkspaceBackend {
  const fail = async (): Promise<never> => {
    throw new BackendUnavailableError(message);
  };
  return {
    kind: mode,
    warnings: [],
    create: fail,
    destroy: fail,
    putTransferFile: fail,
    removeTransferFile: fail,
    putDirectory: fail,
    startCommand: fail,
    commandStatus: fail,
    waitCommand: fail,
    readOutput: fail,
    killCommand: fail,
    killAll: fail,
    snapshot: fail,
    restore: fail,
    deleteSnapshot: fail,
    snapshotSizeBytes: fail,
    scanSnapshot: fail,
    listResources: fail,
    listSnapshots: fail,
  };
}
