import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';

/**
 * The backend of a mode this Lambda build does not contain (today: every mode — the Fargate backend
 * comes with a later issue, and the local/docker backends are never bundled into a Lambda). Every
 * operation throws BackendUnavailableError (503) with one clear message; reads of the state store
 * (list, get) keep working because they never reach the backend.
 */
export function unavailableBackend(mode: string): WorkspaceBackend {
  const message = `mode ${mode} is not available in this build`;
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
