import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkspaceGate } from '../../shared/service/workspace-gate.js';
import { ConflictError } from '../../shared/contract/errors.js';
import { closeTestProvider, hostileBackends } from '../support/hostile-backends.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// The attacker posts commands while the provider resets or deletes its workspace, hoping one starts
// after the kill-all and lives on beside (or after) the rewrite of its home. Every command must be
// refused (409 naming the operation) or be killed by the operation; nothing it started may outlive it.

const RACERS = 24;

describe('WorkspaceGate: command starts against reset/delete', () => {
  it('refuses a start while a blocking operation runs, naming it, and admits starts after', async () => {
    const gate = new WorkspaceGate();
    let release!: () => void;
    const op = gate.exclusive(
      'w1',
      'resetting',
      true,
      () =>
        new Promise<void>((r) => {
          release = r;
        }),
    );
    await Promise.resolve();
    await expect(gate.start('w1', async () => 'ran')).rejects.toThrow(ConflictError);
    await expect(gate.start('w1', async () => 'ran')).rejects.toThrow(/resetting/);
    await expect(gate.start('other', async () => 'ran')).resolves.toBe('ran');
    release();
    await op;
    await expect(gate.start('w1', async () => 'ran')).resolves.toBe('ran');
  });

  it('an operation waits for the starts already in flight before it runs', async () => {
    const gate = new WorkspaceGate();
    const order: string[] = [];
    let finishStart!: () => void;
    const start = gate.start(
      'w',
      () =>
        new Promise<void>((r) => {
          finishStart = () => {
            order.push('start done');
            r();
          };
        }),
    );
    const op = gate.exclusive('w', 'deleting', true, async () => {
      order.push('op runs');
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual([]);
    finishStart();
    await Promise.all([start, op]);
    expect(order).toEqual(['start done', 'op runs']);
  });

  it('a fetch does not block commands; operations run one at a time, in order', async () => {
    const gate = new WorkspaceGate();
    const order: string[] = [];
    let releaseFetch!: () => void;
    const fetch = gate.exclusive(
      'w',
      'fetching',
      false,
      () =>
        new Promise<void>((r) => {
          releaseFetch = () => {
            order.push('fetch');
            r();
          };
        }),
    );
    const reset = gate.exclusive('w', 'resetting', true, async () => {
      order.push('reset');
    });
    await Promise.resolve();
    await expect(gate.start('w', async () => 'ran')).resolves.toBe('ran');
    releaseFetch();
    await Promise.all([fetch, reset]);
    expect(order).toEqual(['fetch', 'reset']);
    expect(gate.current('w')).toBeUndefined();
  });
});

describe.each(hostileBackends())(
  'commands racing reset and delete ($name backend, real provider)',
  ({ config, skip }) => {
    let wsp: TestProvider;

    beforeAll(async () => {
      if (skip !== undefined) return;
      wsp = await startTestProvider({
        ...config,
        setup: {
          script:
            'echo clean > state.txt # command-race: a cache key of its own (docker cache images are named by key)',
        },
        workspace: { network: 'none' },
      });
    }, 60_000);

    afterAll(() => closeTestProvider(wsp));

    /** Post `RACERS` commands spread over the first 30 ms after `op` was posted. */
    async function race(
      id: string,
      op: () => Promise<{ status: number }>,
    ): Promise<{ op: { status: number }; answers: { status: number; body: any }[] }> {
      const opDone = op();
      const answers = await Promise.all(
        Array.from(
          { length: RACERS },
          (_, i) =>
            new Promise<{ status: number; body: any }>((resolve, reject) => {
              setTimeout(
                () => {
                  // Each racer leaves a process behind that would write a marker after the operation ended.
                  wsp
                    .api('POST', `/workspaces/${id}/commands`, {
                      command: `(sleep 1.5; echo late > late-${i}.txt) & echo started`,
                      waitMs: 0,
                    })
                    .then(resolve, reject);
                },
                (i * 30) / RACERS,
              );
            }),
        ),
      );
      return { op: await opDone, answers };
    }

    it.skipIf(skip !== undefined)(
      'no command posted during a reset outlives it: each is refused with 409 or killed, and the fingerprint matches',
      async () => {
        const ws = await wsp.setup();
        await wsp.exec(ws.id, 'echo dirty > state.txt; (sleep 1.5; echo early > early.txt) &');
        const { op, answers } = await race(ws.id, () => wsp.api('POST', `/workspaces/${ws.id}/reset`, {}));
        expect(op.status).toBe(200);
        expect((op as any).body.matches).toBe(true);
        for (const a of answers) {
          expect([200, 202, 409]).toContain(a.status);
          if (a.status === 409) expect(a.body.error.message).toMatch(/resetting|ready/);
        }
        // Give any survivor time to write its marker; then the home must still be the baseline.
        await new Promise((r) => setTimeout(r, 2_500));
        const check = await wsp.exec(ws.id, 'ls; cat state.txt');
        expect(check.stdout.data).not.toMatch(/late-|early/);
        expect(check.stdout.data).toContain('clean');
        // Commands admitted before the reset began are ended (killed), none still running.
        for (const a of answers.filter((x) => x.status !== 409)) {
          const r = await wsp.api('GET', `/workspaces/${ws.id}/commands/${a.body.id}`);
          expect(r.body.state).not.toBe('running');
        }
        const again = await wsp.api('POST', `/workspaces/${ws.id}/reset`, {});
        expect(again.body.matches).toBe(true);
      },
      90_000,
    );

    it.skipIf(skip !== undefined)(
      'no command posted during a delete outlives it, and the delete completes',
      async () => {
        const ws = await wsp.setup();
        const { op, answers } = await race(ws.id, () => wsp.api('DELETE', `/workspaces/${ws.id}`));
        expect(op.status).toBe(200);
        for (const a of answers) {
          expect([200, 202, 409]).toContain(a.status);
          if (a.status === 409) expect(a.body.error.message).toMatch(/deleting|deleted|ready/);
        }
        const after = await wsp.api('GET', `/workspaces/${ws.id}`);
        expect(after.body.status).toBe('deleted');
        await new Promise((r) => setTimeout(r, 2_000));
        // The workspace's compute is gone and nothing recreated it.
        const left = await wsp.provider.deps.backend.listResources();
        expect(left.map((r) => r.workspaceId)).not.toContain(ws.id);
      },
      90_000,
    );
  },
);
