import { spawn } from 'node:child_process';
import { StepFailedError } from '../../../contract/errors.js';

/**
 * Run a host tool (cp, chown…) with argv (never a shell) and wait. Throws StepFailedError with the
 * exit code and the last 2 KB of stderr when it fails. Only file paths reach argv — never secrets.
 */
export async function runTool(step: string, argv: readonly string[]): Promise<void> {
  // argv is UTF-8 encoded by spawn: callers pass only provider-chosen paths here (names from a
  // workspace, which may be any bytes, go through fs APIs with Buffer paths instead).
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new StepFailedError(step, 'empty argv');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-2048);
    });
    child.on('error', (cause) => reject(new StepFailedError(step, `cannot run ${cmd}: ${cause.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new StepFailedError(step, `${cmd} exited ${code ?? signal}: ${stderr.trim()}`, { code, signal }));
    });
  });
}
