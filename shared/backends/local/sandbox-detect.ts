import fs from 'node:fs/promises';
import path from 'node:path';
import { BackendUnavailableError } from '../../contract/errors.js';
import { runTool } from './exec.js';
import { HOST_UID_BASE } from './host-uids.js';
import { rootfsArgs, type SandboxHost } from './sandbox.js';

export interface DetectOptions {
  /** Path of bwrap; undefined = search PATH; null = behave as if bwrap were not installed (tests). */
  bwrapPath?: string | null;
  /** Path of slirp4netns; undefined = search PATH; null = behave as if it were not installed (tests). */
  slirp4netnsPath?: string | null;
}

export interface Detected {
  sandbox: SandboxHost;
  warnings: string[];
}

const NO_SANDBOX_WARNING =
  "NO SANDBOX: bubblewrap (bwrap) is not available, so local commands run directly on the host and can read the provider's files";

/** Find an executable on the provider's PATH. */
async function which(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      await fs.access(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

/**
 * Decide how commands are confined here, and prove it: a probe sandbox must start (as an unused
 * host uid when root). Weakened guarantees come back as warnings.
 */
export async function detectSandbox(options: DetectOptions = {}): Promise<Detected> {
  const asRoot = process.getuid?.() === 0;
  const warnings: string[] = [];
  if (asRoot) {
    for (const tool of ['setpriv', 'prlimit']) {
      if ((await which(tool)) === undefined) {
        throw new BackendUnavailableError(`the local backend needs '${tool}' (util-linux) when running as root`);
      }
    }
  } else {
    warnings.push(
      "the provider does not run as root: every workspace runs as the provider's own uid; each command has a pid namespace of its own, so background processes end with their command (no per-workspace pid namespace that lasts between commands)",
    );
  }
  const bwrapPath = options.bwrapPath === null ? undefined : (options.bwrapPath ?? (await which('bwrap')));
  const rootfs = await rootfsArgs();
  if (bwrapPath !== undefined) {
    const probe = await runTool([
      ...(asRoot
        ? ['setpriv', `--reuid=${HOST_UID_BASE}`, `--regid=${HOST_UID_BASE}`, '--clear-groups', '--inh-caps=-all', '--']
        : []),
      bwrapPath,
      '--unshare-user',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-cgroup-try',
      ...rootfs,
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--cap-drop',
      'ALL',
      '--',
      'true',
    ]);
    if (probe.code === 0)
      return {
        sandbox: { kind: 'bwrap', bwrapPath, asRoot, rootfsArgs: rootfs, ...(await detectEgress(asRoot, options)) },
        warnings,
      };
    warnings.push(
      `${NO_SANDBOX_WARNING} (bwrap at ${bwrapPath} failed its probe: ${probe.stderr.trim().slice(0, 300)})`,
    );
  } else {
    warnings.push(NO_SANDBOX_WARNING);
  }
  // Each workspace's own pid namespace needs bwrap (pid-namespace.ts): here commands share the host's.
  warnings.push(
    'no pid namespace without bwrap: workspace commands see every process of the host (command lines included)',
  );
  if (!asRoot) warnings.push('without root and without a sandbox, workspaces are not isolated from each other at all');
  return { sandbox: { kind: 'none', asRoot, rootfsArgs: rootfs }, warnings };
}

/**
 * Network 'egress' = a fresh network namespace + slirp4netns with the host's loopback disabled,
 * attached by root (net-egress.sh). Without it 'egress' runs as 'none', never as 'host'.
 */
async function detectEgress(
  asRoot: boolean,
  options: DetectOptions,
): Promise<{ slirp4netnsPath: string } | { egressUnavailable: string }> {
  if (!asRoot)
    return {
      egressUnavailable:
        "network 'egress' runs as 'none': it needs the provider to run as root (slirp4netns is attached by root)",
    };
  const found =
    options.slirp4netnsPath === null ? undefined : (options.slirp4netnsPath ?? (await which('slirp4netns')));
  if (found === undefined)
    return {
      egressUnavailable: "network 'egress' runs as 'none': slirp4netns is not installed (Debian package slirp4netns)",
    };
  return { slirp4netnsPath: found };
}
