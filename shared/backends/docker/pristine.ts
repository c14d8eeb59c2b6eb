/**
 * Which workspace containers are still exactly their snapshot image (in this process's knowledge):
 * made from a snapshot (a cache entry or a baseline — images committed from containers the runner had
 * already initialised, so its `init` changes nothing in them) and nothing run or copied in since but
 * the runner's own init / kill / killall. For such a container the backend knows its files without
 * looking:
 *   - its baseline snapshot is the image itself, tagged (no `docker commit`: ~80–140 ms here);
 *   - its home's fingerprint is the one measured once in a pristine container of that image
 *     (fingerprint.ts keeps it beside the image's file index), so no walk.
 * Anything that may write into the container — a command start, any other runner request, a
 * put-archive — forgets it first (before the write is sent), and so does removing or replacing the
 * container. Only ever an optimisation: unknown (a provider restart, a container made from the base
 * image) means commit and walk as before.
 */
export class PristineContainers {
  private readonly images = new Map<string, string>();

  /** Container `name` is, from now on, its image `imageId` (a content address) and nothing else. */
  set(name: string, imageId: string): void {
    this.images.set(name, imageId);
  }

  /** The image id container `name` is still identical to, if known. */
  imageOf(name: string): string | undefined {
    return this.images.get(name);
  }

  forget(name: string): void {
    this.images.delete(name);
  }
}

/**
 * Runner requests that leave the container's files as they are (runner.sh: init is idempotent on a
 * snapshot; stdin only queues bytes in the bind-mounted command dir, for a command whose start forgot
 * the container already).
 */
const KEEPS_FILES = new Set(['init', 'kill', 'killall', 'stdin']);

export const runnerRequestKeepsFiles = (argv: readonly string[]): boolean => KEEPS_FILES.has(argv[0] ?? '');
