/**
 * What the SSM session needs from a websocket, so the protocol logic is testable and not tied to `ws`.
 * Contract: `send` queues one frame (string → text frame, Buffer → binary frame) and may throw if
 * the socket is gone; `onMessage` / `onClose` / `onPong` register the single handler for each event;
 * `close` is idempotent.
 */
export interface SsmTransport {
  send(data: Buffer | string): void;
  onMessage(handler: (data: Buffer | string) => void): void;
  /** Called once when the underlying socket closes (err set when it failed). */
  onClose(handler: (err?: Error) => void): void;
  close(): void;
  /** A websocket ping (keepalive); absent on transports without one. May throw if the socket is gone. */
  ping?(): void;
  /** Registers the single handler for pongs from the peer. */
  onPong?(handler: () => void): void;
}

/** Timer functions, injectable so tests can drive timeouts without waiting. */
export interface SsmTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: SsmTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};
