import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startEmbeddedDynamo } from '../../shared/state/embedded.js';

export interface TcpDynamo {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  close(): Promise<void>;
}

/**
 * Embedded dynalite reachable over TCP on 127.0.0.1, for tests that stand in for a remote
 * DynamoDB (the Lambda functions, a bundle run in another process): the embedded store itself
 * listens only on a unix socket (see shared/state/embedded.ts), so this pipes a loopback port to it.
 */
export async function startTcpDynalite(): Promise<TcpDynamo> {
  const dynamo = await startEmbeddedDynamo();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ path: dynamo.socketPath });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closing: Promise<void> | undefined;
  return {
    endpoint,
    close() {
      closing ??= (async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await dynamo.close();
      })();
      return closing;
    },
  };
}
