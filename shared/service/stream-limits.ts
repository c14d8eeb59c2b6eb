import { TooManyRequestsError } from '../contract/errors.js';

/**
 * Caps on open event streams (SSE), per workspace and in total: each stream polls the state store
 * and the backend for as long as it is open, so an agent (or a controller gone wrong) opening
 * thousands would slow every API call of the provider. Beyond a cap: 429, before anything is sent.
 */
export class StreamLimits {
  private total = 0;
  private readonly perWorkspace = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerWorkspace: number,
  ) {}

  /**
   * Take a slot for a stream of `workspaceId`, or throw TooManyRequestsError. The slot is given back
   * by the returned function or when `signal` aborts (the client went away), whichever comes first.
   */
  acquire(workspaceId: string, signal: AbortSignal): () => void {
    const mine = this.perWorkspace.get(workspaceId) ?? 0;
    if (mine >= this.maxPerWorkspace) {
      throw new TooManyRequestsError(
        `workspace '${workspaceId}' has ${mine} open event streams (the limit); close one or poll instead`,
      );
    }
    if (this.total >= this.maxTotal)
      throw new TooManyRequestsError(
        `the provider has ${this.total} open event streams (the limit); retry later or poll instead`,
      );
    this.total += 1;
    this.perWorkspace.set(workspaceId, mine + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      signal.removeEventListener('abort', release);
      this.total -= 1;
      const left = (this.perWorkspace.get(workspaceId) ?? 1) - 1;
      if (left <= 0) this.perWorkspace.delete(workspaceId);
      else this.perWorkspace.set(workspaceId, left);
    };
    if (signal.aborted) release();
    else signal.addEventListener('abort', release, { once: true });
    return release;
  }

  /** Open streams now (for tests). */
  open(workspaceId?: string): number {
    return workspaceId === undefined ? this.total : (this.perWorkspace.get(workspaceId) ?? 0);
  }
}
