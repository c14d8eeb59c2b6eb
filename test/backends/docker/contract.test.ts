import { describe } from 'vitest';
import { dockerUnavailable, makeDockerBackend } from '../../support/docker-daemon.js';
import { describeBackendContract } from '../contract.js';

// The same contract suite the local backend passes, against the Docker backend.
describe.skipIf(dockerUnavailable !== undefined)('docker backend', () => {
  describeBackendContract('docker', () => makeDockerBackend());
});
