import type { Readable } from 'node:stream';

/** How long a new sandbox (bwrap) may take to report its child and for its payload to say it is ready. */
const BWRAP_START_TIMEOUT_MS = 15_000;

/** bwrap's --info-fd JSON: the host pid of its child (for a holder: the namespace's init). */
export function childPid(stream: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('no namespace report in time')), BWRAP_START_TIMEOUT_MS);
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      text += d;
      const m = /"child-pid":\s*(\d+)/.exec(text);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    stream.once('close', () => {
      clearTimeout(timer);
      reject(new Error('bwrap reported no namespace'));
    });
    stream.once('error', (e) => reject(e));
  });
}

/** One byte from the payload: the namespaces are set up and the init runs. EOF first: it failed. */
export function readyByte(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the sandbox did not start in time')), BWRAP_START_TIMEOUT_MS);
    stream.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    stream.once('close', () => {
      clearTimeout(timer);
      reject(new Error('the sandbox ended before it was ready'));
    });
    stream.once('error', (e) => reject(e));
  });
}
