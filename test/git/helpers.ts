/**
 * Helpers for the git broker tests: temp dirs that are always removed, running a workspace argv
 * for real (no sandbox), and a scan for a token in every file under a directory.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `wsp-gittest-${prefix}-`));
}

export function removeDirs(dirs: string[]): void {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

export interface ArgvResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a workspace-side argv like the backend executor would: no shell of ours, a clean env with
 * its own HOME (the "workspace user"), no host git config.
 */
export function runArgv(argv: string[], options: { cwd: string; home: string; stdin?: Buffer }): Promise<ArgvResult> {
  const [command, ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = spawn(command!, args, {
      cwd: options.cwd,
      env: { PATH: process.env.PATH, HOME: options.home, LC_ALL: 'C', GIT_CONFIG_NOSYSTEM: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.stdin.on('error', () => undefined); // the command may exit without reading stdin
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? Buffer.alloc(0));
  });
}

/** runArgv that fails the test (with stderr) on a non-zero exit. */
export async function runArgvOk(
  argv: string[],
  options: { cwd: string; home: string; stdin?: Buffer },
): Promise<ArgvResult> {
  const result = await runArgv(argv, options);
  if (result.code !== 0) throw new Error(`argv exited ${result.code}: ${result.stderr}`);
  return result;
}

/** Every file under `dir` (recursively, symlinks not followed) whose bytes contain any needle. */
export function filesContaining(dir: string, needles: readonly string[]): string[] {
  const hits: string[] = [];
  const walk = (current: string): void => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        const bytes = fs.readFileSync(full);
        if (needles.some((n) => bytes.includes(n))) hits.push(full);
      }
    }
  };
  walk(dir);
  return hits;
}

/** Number of regular files under `dir` (to show a scan actually looked at something). */
export function countFiles(dir: string): number {
  let count = 0;
  const walk = (current: string): void => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(current, entry.name));
      else if (entry.isFile()) count++;
    }
  };
  walk(dir);
  return count;
}
