/**
 * Persistent shell sessions (issue 13): one long-lived shell per session, run as an internal command
 * of its workspace with open stdin; each run is one line written to it (shared/service/sessions.ts).
 */

export type SessionState = 'idle' | 'busy' | 'lost' | 'closed';
export type SessionShell = 'bash' | 'sh';
export type SessionRunState = 'running' | 'exited' | 'killed' | 'interrupted' | 'lost';

/** The current (or last) run of a session, as kept on its record. */
export interface SessionRun {
  /** `run-<seq>`. */
  id: string;
  seq: number;
  state: SessionRunState;
  exitCode: number | null;
  /** Why it was killed, interrupted or lost ('timeout', 'interrupted', 'the shell ended', …). */
  reason?: string;
  /** 0 = no limit. Enforced whenever the session is observed (no in-process timer needed: Lambda). */
  timeoutMs: number;
  /** Bytes of the shell's stdout when the run was written: its end sentinel comes after. */
  stdoutOffset: number;
  startedAt: string;
  /** An interrupt was sent (POST …/interrupt), when. */
  interruptedAt?: string;
  /** The timeout's escalation: 1 = SIGINT sent, 2 = SIGTERM sent (then the shell is killed). */
  timeoutStage?: 1 | 2;
  /** When the last signal (interrupt or timeout stage) was sent: the grace before the next step runs from it. */
  signalledAt?: string;
  endedAt?: string;
  durationMs?: number;
}

export interface SessionRecord {
  workspaceId: string;
  id: string;
  version: number;
  state: SessionState;
  shell: SessionShell;
  cwd: string;
  /** The shell's internal command (WorkspaceCommands id). */
  commandId: string;
  /** Random per session: a run's end is `<nonce>:<seq> <exit code>` on the shell's stdout. */
  nonce: string;
  /** Seq of the last run written (0: none yet). */
  seq: number;
  /** Where the next run's sentinel is looked for on the shell's stdout (after the last one found). */
  stdoutOffset: number;
  /** Why the session is lost. */
  reason?: string;
  run?: SessionRun;
  owner: string;
  createdAt: string;
  updatedAt: string;
}
