import { describe } from 'vitest';
import { dockerUnavailable } from '../../support/docker-daemon.js';
import { makeEcsBackend } from '../../support/ecs-fixture.js';
import { registryUnavailable } from '../../support/registry.js';
import { describeBackendContract } from '../contract.js';

// The same contract suite the local and Docker backends pass, against the Fargate backend: ECS is
// faked at the SDK boundary (tasks are containers of the test dockerd, ECS Exec a loopback SSM agent),
// while the SSM client, the runner over a real PTY, presigned S3 transfers by curl and the cache-image
// layer append to a real registry all run for real (test/support/ecs-fixture.ts).
describe.skipIf(dockerUnavailable !== undefined || registryUnavailable !== undefined)('ecs backend', () => {
  describeBackendContract('ecs', () => makeEcsBackend());
});
