import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from './wait.js';

export interface SpawnedProvider {
  url: string;
  token: string;
  child: ChildProcess;
  output: () => string;
  api(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

const ROOT = path.resolve(import.meta.dirname, '../..');

/** `npm start` as a separate process (tsx functions/server/main.ts), so tests can kill -9 it. */
export async function spawnProvider(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<SpawnedProvider> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'functions/server/main.ts'), '--config', configFile, '--port', '0'],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`provider did not start:\n${out}`)), 30_000);
    const check = (): void => {
      const m = /wsp: serving on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`provider exited ${code}:\n${out}`));
    });
  });
  const dataDir = JSON.parse(fs.readFileSync(configFile, 'utf8')).dataDir as string;
  const token = fs.readFileSync(path.join(dataDir, 'auth-token'), 'utf8').trim();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    url,
    token,
    child,
    output: () => out,
    async api(method, route, body) {
      const res = await fetch(url + route, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** The workspace once it has left 'provisioning' (a restarted provider resuming it, or a new setup). */
export function settledView(provider: SpawnedProvider, id: string, timeoutMs?: number): Promise<any> {
  return waitFor(
    `workspace ${id} to leave provisioning`,
    async () => {
      const view = (await provider.api('GET', `/workspaces/${id}`)).body;
      return view.status === 'provisioning' ? undefined : view;
    },
    timeoutMs,
  );
}
