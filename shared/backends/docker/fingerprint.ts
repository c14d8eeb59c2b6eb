import fs from 'node:fs/promises';
import path from 'node:path';
import { StepFailedError } from '../../contract/errors.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { fingerprintArgv, parseFingerprint } from '../../workspace/fingerprint.js';
import { execIn, type DockerClient } from './client.js';

/**
 * The home's fingerprint for a docker workspace, in time that grows with what CHANGED since the
 * container's image, not with the home's size.
 *
 * Why it is sound: a container's writable layer only ever gains entries — a file modified, even back
 * to its old bytes, stays listed by `docker diff` (C), a deleted one leaves a whiteout (D). So if the
 * diff lists nothing under the home both before and after the in-container script ran, the digest the
 * script printed is the digest of the IMAGE's home, and can be remembered for that image id (image
 * ids are content addresses). The next container from that image with an empty diff under the home —
 * every reset, which starts a fresh container from the baseline image — gets it without reading a byte.
 * Anything else runs the same script the service would run inside the workspace, as the workspace user.
 */
export class DockerFingerprints {
  constructor(
    private readonly docker: DockerClient,
    private readonly cacheDir: string,
  ) {}

  async home(container: string, plan: WorkspacePlan): Promise<string> {
    const imageId = (await this.docker.getContainer(container).inspect()).Image;
    const cleanBefore = !(await this.changedUnder(container, plan.home));
    if (cleanBefore) {
      const known = await this.read(imageId);
      if (known) return known;
    }
    const digest = await this.script(container, plan);
    if (cleanBefore && !(await this.changedUnder(container, plan.home))) await this.write(imageId, digest);
    return digest;
  }

  /**
   * True when `docker diff` lists any path at or below `dir` — or cannot tell: the daemon's diff
   * lstats full host paths, so a tree deeper than PATH_MAX in the image (the workspace made it) makes
   * it answer 500. Unknown counts as changed: the script runs and nothing is cached.
   */
  private async changedUnder(container: string, dir: string): Promise<boolean> {
    let raw: unknown;
    try {
      raw = await this.docker.getContainer(container).changes();
    } catch {
      return true;
    }
    const changes = parseChanges(raw);
    const prefix = dir.endsWith('/') ? dir : `${dir}/`;
    return changes.some((c) => c.Path === dir || c.Path.startsWith(prefix));
  }

  private async script(container: string, plan: WorkspacePlan): Promise<string> {
    const result = await execIn(
      this.docker,
      container,
      ['env', 'LC_ALL=C', ...fingerprintArgv(plan.home)],
      `${plan.user.uid}:${plan.user.gid}`,
    );
    if (result.exitCode !== 0)
      throw new StepFailedError('fingerprint', `exit code ${result.exitCode}: ${result.stderr.trim().slice(-500)}`);
    return parseFingerprint(result.stdout).digest;
  }

  private file(imageId: string): string {
    return path.join(this.cacheDir, imageId.replace(/[^A-Za-z0-9]/g, '_'));
  }

  private async read(imageId: string): Promise<string | undefined> {
    const text = await fs.readFile(this.file(imageId), 'utf8').catch(() => undefined);
    return text && /^[0-9a-f]{64}$/.test(text.trim()) ? text.trim() : undefined;
  }

  private async write(imageId: string, digest: string): Promise<void> {
    await fs.mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
    const file = this.file(imageId);
    await fs.writeFile(`${file}.tmp`, digest, { mode: 0o600 });
    await fs.rename(`${file}.tmp`, file);
  }
}

/** The daemon answers `null` (which dockerode hands back as a raw Buffer) when nothing changed. */
function parseChanges(raw: unknown): { Path: string }[] {
  const value: unknown = Buffer.isBuffer(raw) ? JSON.parse(raw.toString('utf8') || 'null') : raw;
  return Array.isArray(value)
    ? value.filter((c): c is { Path: string } => typeof (c as { Path?: unknown })?.Path === 'string')
    : [];
}
