import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dynamoDbLocalStatus } from '../support/dynamodb-local.js';

describe('dynamoDbLocalStatus', () => {
  it('reports a missing jar with the command that fetches it', () => {
    const empty = mkdtempSync(join(tmpdir(), 'wsp-ddbl-'));
    try {
      const status = dynamoDbLocalStatus({}, empty);
      expect(status.state).toBe('missing');
      expect(status.state === 'missing' && status.message).toContain('node test/support/prepare.mjs');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('skips only when WSP_SKIP_DYNAMODB_LOCAL=1', () => {
    expect(dynamoDbLocalStatus({ WSP_SKIP_DYNAMODB_LOCAL: '1' }, '/nonexistent').state).toBe('skipped');
    expect(dynamoDbLocalStatus({ WSP_SKIP_DYNAMODB_LOCAL: '0' }, '/nonexistent').state).toBe('missing');
  });
});
