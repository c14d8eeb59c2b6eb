import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SUBCOMMANDS } from '../../functions/cli/args.js';
import { main } from '../../functions/cli/wsp.js';

// `wsp completion bash`, loaded into a real bash and asked what it completes — made from the parser's
// own tables, so a new subcommand or flag is completed without anyone remembering to.

async function script(): Promise<string> {
  let out = '';
  const code = await main(
    ['completion', 'bash'],
    {},
    {
      out: async (d) => {
        out += String(d);
      },
      err: async () => undefined,
    },
  );
  expect(code).toBe(0);
  return out;
}

/** What the completion offers for `words` (the last one being completed). */
function complete(source: string, words: string[]): string[] {
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const out = execFileSync(
    'bash',
    [
      '-c',
      `${source}\nCOMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _wsp; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { encoding: 'utf8' },
  );
  return out.split('\n').filter(Boolean);
}

describe('wsp completion bash', () => {
  it('completes every subcommand, and only the flags each accepts', async () => {
    const source = await script();
    const all = complete(source, ['wsp', '']);
    for (const name of [...Object.keys(SUBCOMMANDS), 'serve', 'completion']) expect(all).toContain(name);
    expect(complete(source, ['wsp', 'ex'])).toEqual(['exec']);
    expect(complete(source, ['wsp', 'exec', 'ws-x', '--t']).sort()).toEqual(['--timeout-ms', '--token']);
    expect(complete(source, ['wsp', 'cp', 'a', 'b', '-'])).toContain('-r');
    expect(complete(source, ['wsp', 'ls', '--t'])).toEqual(['--token']);
    expect(complete(source, ['wsp', 'completion', ''])).toEqual(['bash']);
  });

  it('refuses another shell as a usage error (exit 2)', async () => {
    let err = '';
    const code = await main(
      ['completion', 'fish'],
      {},
      {
        out: async () => undefined,
        err: async (d) => {
          err += String(d);
        },
      },
    );
    expect(code).toBe(2);
    expect(err).toMatch(/wsp completion bash/);
  });
});
