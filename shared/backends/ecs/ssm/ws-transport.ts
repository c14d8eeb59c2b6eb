/**
 * `SsmTransport` over the `ws` package. `openWsTransport` resolves once the socket is open and
 * rejects with BackendUnavailableError if it cannot be opened (the URL is not echoed: the ECS
 * stream URL carries no secret, but the caller may log it themselves if wanted).
 */
import WebSocket from 'ws';
import { BackendUnavailableError } from '../../../contract/errors.js';
import type { SsmTransport } from './transport.js';

const KEEPALIVE = Buffer.from('keepalive');

function wrapWebSocket(ws: WebSocket): SsmTransport {
  let closeHandler: ((err?: Error) => void) | undefined;
  let closeError: Error | undefined;
  let closedFired = false;
  const fireClose = (): void => {
    if (closedFired) return;
    closedFired = true;
    closeHandler?.(closeError);
  };
  ws.on('error', (err) => {
    closeError = err;
  });
  ws.on('close', fireClose);
  return {
    send(data) {
      if (ws.readyState !== WebSocket.OPEN) throw new BackendUnavailableError('ssm websocket is not open');
      ws.send(data, { binary: typeof data !== 'string' });
    },
    onMessage(handler) {
      ws.on('message', (raw, isBinary) => {
        const buf = Array.isArray(raw) ? Buffer.concat(raw) : raw instanceof ArrayBuffer ? Buffer.from(raw) : raw;
        handler(isBinary ? buf : buf.toString('utf8'));
      });
    },
    onClose(handler) {
      closeHandler = handler;
      if (closedFired) handler(closeError);
    },
    close() {
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
    },
    ping() {
      if (ws.readyState !== WebSocket.OPEN) throw new BackendUnavailableError('ssm websocket is not open');
      ws.ping(KEEPALIVE); // the plugin's payload
    },
    onPong(handler) {
      ws.on('pong', () => handler());
    },
  };
}

/** Open `streamUrl` (from ExecuteCommand's `session.streamUrl`) and wrap it. */
export function openWsTransport(streamUrl: string): Promise<SsmTransport> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(streamUrl);
    const onError = (err: Error): void => {
      reject(new BackendUnavailableError('ssm websocket could not be opened', err));
    };
    ws.once('error', onError);
    ws.once('open', () => {
      ws.off('error', onError);
      resolve(wrapWebSocket(ws));
    });
  });
}
