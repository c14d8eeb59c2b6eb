import fs from 'node:fs';
import path from 'node:path';
import { WspClient } from '../../shared/client/client.js';
import type { ParsedArgs } from './args.js';

const DEFAULT_URL = 'http://127.0.0.1:7070';

/**
 * Server URL and token for the CLI: flags, then env (WSP_URL; WSP_TOKEN, or the server's own
 * WSP_AUTH_TOKEN), then the token file the provider writes at first start: <dataDir>/auth-token
 * (--data-dir / WSP_DATA_DIR, default .wsp). No token at all is allowed (a server with auth off).
 */
export function clientFromArgs(values: ParsedArgs['values'], env: NodeJS.ProcessEnv): WspClient {
  // An empty variable counts as unset (`WSP_TOKEN= wsp ls` falls through to the token file).
  const fromEnv = (name: string): string | undefined => env[name] || undefined;
  const baseUrl = values.url ?? fromEnv('WSP_URL') ?? DEFAULT_URL;
  const token =
    values.token ??
    fromEnv('WSP_TOKEN') ??
    fromEnv('WSP_AUTH_TOKEN') ??
    readTokenFile(values['data-dir'] ?? fromEnv('WSP_DATA_DIR') ?? '.wsp');
  return new WspClient({ baseUrl, ...(token ? { token } : {}) });
}

function readTokenFile(dataDir: string): string | undefined {
  try {
    return fs.readFileSync(path.join(dataDir, 'auth-token'), 'utf8').trim() || undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
