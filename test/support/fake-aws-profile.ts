import { randomInt } from 'node:crypto';

/**
 * How the AWS fakes behave, chosen by `WSP_FAKE_AWS`:
 * - unset or `fast` (everyday runs): every answer at once, a task visible as soon as RunTask returns it.
 * - `realistic`: AWS as it really behaves (../shared/docs/cloud.md, "How AWS really behaves") — see
 *   fake-ecs.ts for what ECS does with it. Its random draws come from one seeded generator: the seed
 *   is printed, and `WSP_FAKE_AWS_SEED=<seed>` replays the same draws (timing on a busy machine may
 *   still order calls differently). `WSP_FAKE_AWS_SCALE` (default 1: true to life) multiplies every
 *   modelled delay; the test fixture scales its retry and poll waits by the same factor, so the race
 *   between AWS and our backoff keeps its shape at any speed. CI runs at 0.25 (`npm run test:ecs-realistic`).
 */
export interface FakeAwsProfile {
  readonly name: 'fast' | 'realistic';
  readonly seed: number;
  /** Multiplies every modelled delay (realistic only). */
  readonly scale: number;
  /** [0, 1), seeded. */
  random(): number;
  /** A duration drawn uniformly from [minMs, maxMs] (true-to-life values), then scaled. */
  between(minMs: number, maxMs: number): number;
  chance(p: number): boolean;
}

export function fakeAwsProfile(env: NodeJS.ProcessEnv = process.env): FakeAwsProfile {
  const name = env.WSP_FAKE_AWS ?? 'fast';
  if (name !== 'fast' && name !== 'realistic')
    throw new Error(`WSP_FAKE_AWS must be 'fast' or 'realistic', not '${name}'`);
  const seed = env.WSP_FAKE_AWS_SEED ? Number(env.WSP_FAKE_AWS_SEED) : randomInt(2 ** 31);
  const scale = env.WSP_FAKE_AWS_SCALE ? Number(env.WSP_FAKE_AWS_SCALE) : 1;
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`WSP_FAKE_AWS_SEED must be a non-negative integer`);
  if (!(scale > 0)) throw new Error(`WSP_FAKE_AWS_SCALE must be a positive number`);
  const random = mulberry32(seed);
  if (name === 'realistic')
    console.info(`fake AWS: realistic profile, seed ${seed}, scale ${scale} (replay with WSP_FAKE_AWS_SEED=${seed})`);
  return {
    name,
    seed,
    scale,
    random,
    between: (minMs, maxMs) => (minMs + random() * (maxMs - minMs)) * scale,
    chance: (p) => random() < p,
  };
}

/** A small seeded PRNG (mulberry32): uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
