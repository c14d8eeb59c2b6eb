import { describe, expect, it } from 'vitest';
import type { CommandSpec } from '../../../shared/contract/backend.js';
import {
  buildLaunch,
  guestToHost,
  NET_EGRESS_SCRIPT,
  networkWarnings,
  type SandboxHost,
} from '../../../shared/backends/local/sandbox.js';
import { planFor } from '../../support/backend-fixture.js';

/** argv of the chain followed by what bwrap reads from fd 3 (`--args 3`): every option bwrap gets. */
function bwrapArgs(launch: { chain: string[]; fd3: Buffer }): string[] {
  return [
    ...launch.chain,
    ...launch.fd3
      .toString()
      .split('\0')
      .filter((a) => a !== ''),
  ];
}

/** The launch chain per host situation (pure); the root + bwrap chain runs for real in local.test.ts. */
describe('local sandbox launch chain', () => {
  const plan = { ...planFor(), resources: { pids: 100 } };
  const paths = {
    home: '/data/local/workspaces/w/home',
    tmp: '/data/local/workspaces/w/tmp',
    transfer: '/data/local/workspaces/w/transfer',
  };
  const spec: CommandSpec = {
    commandId: 'c',
    argv: ['echo', 'hi'],
    cwd: `${plan.home}/workspace`,
    env: { TOKEN: "v@lue it's" },
    timeoutMs: 0,
    maxOutputBytes: 10,
  };
  const rootfsArgs = ['--ro-bind', '/usr', '/usr'];

  it('root + bwrap: prlimit, setpriv to the host uid, bwrap without pid namespace, env only in fd 3', () => {
    const sandbox: SandboxHost = { kind: 'bwrap', bwrapPath: '/usr/bin/bwrap', asRoot: true, rootfsArgs };
    const launch = buildLaunch(sandbox, 200123, plan, paths, spec);
    const { chain, fd3 } = launch;
    expect(chain.slice(0, 9)).toEqual([
      'prlimit',
      '--nproc=100',
      '--',
      'setpriv',
      '--reuid=200123',
      '--regid=200123',
      '--clear-groups',
      '--inh-caps=-all',
      '--',
    ]);
    expect(chain).toContain('/usr/bin/bwrap');
    expect(bwrapArgs(launch)).not.toContain('--unshare-pid');
    expect(bwrapArgs(launch)).toContain('--unshare-net'); // the default network of commands is 'none'
    expect(chain.join(' ')).not.toContain('v@lue');
    // No option in argv (visible to the workspace's ps until bwrap execs): no host path either.
    expect(chain.slice(chain.indexOf('/usr/bin/bwrap'))).toEqual(['/usr/bin/bwrap', '--args', '3', '--', 'echo', 'hi']);
    expect(chain.join(' ')).not.toContain(paths.home);
    const args = fd3.toString().split('\0');
    expect(args).toContain('--clearenv');
    expect(args.slice(args.indexOf('TOKEN') - 1, args.indexOf('TOKEN') + 2)).toEqual([
      '--setenv',
      'TOKEN',
      "v@lue it's",
    ]);
  });

  it("not root: no uid switch, a pid namespace per command; network 'none' unshares the net", () => {
    const sandbox: SandboxHost = { kind: 'bwrap', bwrapPath: 'bwrap', asRoot: false, rootfsArgs };
    const launch = buildLaunch(sandbox, 1000, { ...plan, network: 'none' }, paths, spec);
    expect(launch.chain).not.toContain('setpriv');
    expect(bwrapArgs(launch)).toEqual(expect.arrayContaining(['--unshare-pid', '--die-with-parent', '--unshare-net']));
  });

  it("network 'egress' (setup's default): net-egress.sh first, as root, then a fresh net namespace that waits for slirp4netns", () => {
    const sandbox: SandboxHost = {
      kind: 'bwrap',
      bwrapPath: '/usr/bin/bwrap',
      asRoot: true,
      rootfsArgs,
      slirp4netnsPath: '/usr/bin/slirp4netns',
    };
    const launch = buildLaunch(sandbox, 200123, plan, paths, { ...spec, network: 'egress' });
    const { chain } = launch;
    expect(chain.slice(0, 4)).toEqual(['/bin/sh', NET_EGRESS_SCRIPT, '/usr/bin/slirp4netns', '--']);
    expect(chain.indexOf('setpriv')).toBeGreaterThan(3);
    expect(bwrapArgs(launch)).toEqual(expect.arrayContaining(['--unshare-net', '--info-fd', '5', '--block-fd', '6']));
  });

  it("network 'egress' without slirp4netns is 'none', never the host's network", () => {
    const sandbox: SandboxHost = {
      kind: 'bwrap',
      bwrapPath: '/usr/bin/bwrap',
      asRoot: true,
      rootfsArgs,
      egressUnavailable: 'slirp4netns is not installed',
    };
    const launch = buildLaunch(sandbox, 200123, { ...plan, network: 'egress' }, paths, spec);
    expect(bwrapArgs(launch)).toContain('--unshare-net');
    expect(bwrapArgs(launch)).not.toContain('--info-fd');
    expect(launch.chain).not.toContain(NET_EGRESS_SCRIPT);
    expect(networkWarnings(sandbox, { ...plan, network: 'egress' })).toEqual(['slirp4netns is not installed']);
  });

  it("network 'host' shares the host's namespace, with a warning; spec.network overrides plan.network", () => {
    const sandbox: SandboxHost = { kind: 'bwrap', bwrapPath: '/usr/bin/bwrap', asRoot: true, rootfsArgs };
    const hostPlan = { ...plan, network: 'host' as const, setupNetwork: 'host' as const };
    expect(bwrapArgs(buildLaunch(sandbox, 200123, hostPlan, paths, spec))).not.toContain('--unshare-net');
    expect(bwrapArgs(buildLaunch(sandbox, 200123, hostPlan, paths, { ...spec, network: 'none' }))).toContain(
      '--unshare-net',
    );
    expect(networkWarnings(sandbox, hostPlan).join('\n')).toMatch(/network 'host'.*loopback/);
    expect(networkWarnings(sandbox, { ...plan, network: 'none', setupNetwork: 'none' })).toEqual([]);
  });

  it('no sandbox: guest cwd mapped to the host, env through an eval-ed script on fd 3', () => {
    const sandbox: SandboxHost = { kind: 'none', asRoot: false, rootfsArgs };
    const { chain, fd3 } = buildLaunch(sandbox, 1000, plan, paths, spec);
    expect(chain).toContain(`${paths.home}/workspace`);
    expect(chain.join(' ')).not.toContain('v@lue');
    expect(fd3.toString()).toContain(`export TOKEN='v@lue it'\\''s'\n`);
    expect(fd3.toString()).toContain(`export HOME='${paths.home}'\n`);
  });

  it('maps only home, /tmp and the transfer dir to host paths', () => {
    expect(guestToHost(plan, paths, plan.home)).toBe(paths.home);
    expect(guestToHost(plan, paths, '/tmp/x')).toBe(`${paths.tmp}/x`);
    expect(guestToHost(plan, paths, '/etc')).toBeUndefined();
    expect(guestToHost(plan, paths, `${plan.home}/../x`)).toBeUndefined();
  });
});
