import http from 'node:http';
import type net from 'node:net';

/** A loopback HTTP server whose answers a test scripts, recording every request (headers, body). */
export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface ScriptedReply {
  status: number;
  headers?: Record<string, string | undefined>;
  body?: string | Buffer;
}

export interface ScriptedServer {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function scriptedServer(
  reply: (req: RecordedRequest, self: { url: string }) => ScriptedReply | Promise<ScriptedReply>,
): Promise<ScriptedServer> {
  const requests: RecordedRequest[] = [];
  const self = { url: '' };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(rec);
      Promise.resolve(reply(rec, self)).then(
        (r) => {
          res.writeHead(
            r.status,
            Object.fromEntries(
              Object.entries(r.headers ?? {}).filter((e): e is [string, string] => e[1] !== undefined),
            ),
          );
          res.end(r.body ?? '');
        },
        (e: Error) => {
          res.writeHead(500);
          res.end(e.message);
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    url: self.url,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
