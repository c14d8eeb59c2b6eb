import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import { openOrReject } from '../../shared/backends/handle.js';

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
  const unavailable = { delete: fail, sizeBytes: fail, scan: fail, list: fail };
  return {
    kind: mode,
    warnings: [],
    baseIdentity: fail,
    create: fail,
    open: (ref) =>
      openOrReject(ref, () => {
        throw new BackendUnavailableError(message);
      }),
    destroy: fail,
    snapshots: unavailable,
    listResources: fail,
  };
}
