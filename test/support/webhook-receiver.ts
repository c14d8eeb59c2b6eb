import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One POST a receiver got: headers as sent, the raw body. */
export interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  status: number;
}

/**
 * A webhook receiver on 127.0.0.1, as a controller would run one. `answer` picks each request's
 * status (default 200). `listen(port)` may name a port that was closed before (a receiver that was
 * down and comes back).
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  private server: http.Server | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly answer: (
      n: number,
      req: http.IncomingMessage,
    ) => { status: number; headers?: Record<string, string> } = () => ({
      status: 200,
    }),
  ) {}

  async listen(port = 0): Promise<number> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const { status, headers } = this.answer(this.received.length, req);
        this.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status });
        res.writeHead(status, headers).end('ignored by the sender');
        for (const w of this.waiters.splice(0)) w();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/hook`;
  }

  /** Resolves with the first received request `match` accepts (waiting for it as long as the test allows). */
  async waitFor(match: (r: Received) => boolean): Promise<Received> {
    for (;;) {
      const found = this.received.find(match);
      if (found) return found;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** A port nothing listens on right now (bound, then released). */
export async function closedPort(): Promise<number> {
  const r = new WebhookReceiver();
  const port = await r.listen();
  await r.close();
  return port;
}

/**
 * The receiver's check, written from the Standard Webhooks spec (not with the provider's own code):
 * HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>.<body>`, base64, as `v1,<sig>`.
 */
export function signatureValid(secret: string, r: Received): boolean {
  const id = String(r.headers['webhook-id']);
  const ts = String(r.headers['webhook-timestamp']);
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret);
  const expected = Buffer.from(`v1,${createHmac('sha256', key).update(`${id}.${ts}.${r.body}`).digest('base64')}`);
  return String(r.headers['webhook-signature'] ?? '')
    .split(' ')
    .some((s) => Buffer.from(s).length === expected.length && timingSafeEqual(Buffer.from(s), expected));
}
