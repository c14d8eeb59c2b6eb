import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests spawn real git, bwrap and servers; the machine has 2 cores.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
