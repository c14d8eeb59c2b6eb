import { describe, expect, it } from 'vitest';
import { prefersJson } from '../../shared/api/accept.js';

// GET /workspaces/{id}/events answers SSE unless the request prefers JSON (then: the webhook events).
describe('prefersJson', () => {
  it.each([
    [undefined, false],
    ['*/*', false],
    ['text/event-stream', false],
    ['application/json', true],
    ['application/json, text/event-stream', false],
    ['text/event-stream;q=0.5, application/json', true],
    ['application/json;q=0.2, */*;q=0.5', false],
    ['application/*', true],
    ['APPLICATION/JSON', true],
    ['application/json;q=bogus', false],
  ])('%s → %s', (accept, json) => {
    expect(prefersJson(accept)).toBe(json);
  });
});
