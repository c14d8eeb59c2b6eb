/**
 * A token-checking smart-HTTP git server for tests: node `http` on 127.0.0.1 in front of
 * `git http-backend` run as a CGI program. Every request must carry `Authorization: Basic`
 * whose password is `token` (any user name), or `Authorization: Bearer <token>`; otherwise the
 * answer is 401 with `WWW-Authenticate: Basic realm="wsp-test"`, which is what a real forge does.
 *
 * Repositories are bare repos under `root` (see git-fixtures.ts); `url('app')` is
 * `<baseUrl>/app.git`. Every request is recorded in `requests` (path and whether it was
 * authorized) so tests can prove that traffic happened and with which credentials.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface GitServerRequest {
  method: string;
  /** URL path without the query, e.g. `/app.git/info/refs`. */
  path: string;
  authorized: boolean;
}

export interface GitServer {
  /** `http://127.0.0.1:<port>` — no trailing slash, no credentials. */
  baseUrl: string;
  /** GIT_PROJECT_ROOT: the directory holding the bare repositories. */
  root: string;
  /** Token-free clone URL of a repository under root: `<baseUrl>/<name>.git`. */
  url(name: string): string;
  requests: GitServerRequest[];
  /** Stop listening; removes `root` only if the server created it. */
  close(): Promise<void>;
}

export interface GitServerOptions {
  token: string;
  /** Directory of bare repositories; default: a fresh temp dir removed on close. */
  root?: string;
}

export async function startGitServer(options: GitServerOptions): Promise<GitServer> {
  const ownsRoot = options.root === undefined;
  const root = options.root ?? fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-git-server-'));
  fs.mkdirSync(root, { recursive: true });
  const requests: GitServerRequest[] = [];

  const server = http.createServer((req, res) => {
    const parsed = new URL(req.url ?? '/', 'http://127.0.0.1');
    const authorized = isAuthorized(req.headers.authorization, options.token);
    requests.push({ method: req.method ?? 'GET', path: parsed.pathname, authorized });
    if (!authorized) {
      req.resume();
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="wsp-test"', 'Content-Type': 'text/plain' });
      res.end('authentication required\n');
      return;
    }
    runHttpBackend(root, req, res, parsed);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;

  return {
    baseUrl,
    root,
    url: (name) => `${baseUrl}/${name.endsWith('.git') ? name : `${name}.git`}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (ownsRoot) fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Basic with password === token (any user), or Bearer token. */
function isAuthorized(header: string | undefined, token: string): boolean {
  if (!header) return false;
  const [scheme, value = ''] = header.split(/\s+/, 2);
  if (scheme?.toLowerCase() === 'bearer') return value === token;
  if (scheme?.toLowerCase() !== 'basic') return false;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && decoded.slice(colon + 1) === token;
}

/** Run `git http-backend` as CGI: request body → stdin, CGI headers + body on stdout → response. */
function runHttpBackend(root: string, req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.replace(/^\?/, ''),
    REQUEST_METHOD: req.method ?? 'GET',
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    REMOTE_USER: 'wsp-test',
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    SERVER_PROTOCOL: 'HTTP/1.1',
  };
  if (req.headers['content-length'] !== undefined) env.CONTENT_LENGTH = req.headers['content-length'];
  if (req.headers['content-encoding'] !== undefined) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
  const protocol = req.headers['git-protocol'];
  if (typeof protocol === 'string') env.GIT_PROTOCOL = protocol;

  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('error', (err) => fail(res, `cannot start git http-backend: ${err.message}`));
  req.pipe(child.stdin);
  child.stdin.on('error', () => undefined); // backend may exit before reading the whole body

  let head = Buffer.alloc(0);
  let headersSent = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersSent) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const parsed = splitCgiHeaders(head);
    if (!parsed) return;
    headersSent = true;
    res.writeHead(parsed.status, parsed.headers);
    if (parsed.body.length > 0) res.write(parsed.body);
  });
  child.on('close', (code) => {
    if (!headersSent) {
      fail(res, `git http-backend exited ${code} without headers: ${stderr}`);
      return;
    }
    res.end();
  });
}

interface CgiHead {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Parse the CGI header block (ends with an empty line, CRLF or LF); null until complete. */
function splitCgiHeaders(buf: Buffer): CgiHead | null {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  let end: number;
  let sepLen: number;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) [end, sepLen] = [crlf, 4];
  else if (lf >= 0) [end, sepLen] = [lf, 2];
  else return null;
  const headers: Record<string, string> = {};
  let status = 200;
  for (const line of buf.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers[name] = value;
  }
  return { status, headers, body: buf.subarray(end + sepLen) };
}

function fail(res: http.ServerResponse, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(500, { 'Content-Type': 'text/plain' });
  res.end(`${message}\n`);
}
