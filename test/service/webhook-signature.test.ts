import { describe, expect, it } from 'vitest';
import { signedHeaders, signWebhook, verifyWebhook } from '../../shared/service/webhooks/signature.js';

// Deliveries are signed as Standard Webhooks 1.0 specifies, so a receiver can use that project's libraries.
describe('webhook signatures', () => {
  it("matches the Standard Webhooks specification's published example", () => {
    // The example of the spec and its reference libraries (secret, id, timestamp, payload → signature).
    expect(
      signWebhook(
        'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        'msg_p5jXN8AQM9LWM0D4loKWxJek',
        1614265330,
        '{"test": 2432232314}',
      ),
    ).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('refuses what an attacker can send: a changed body, id or timestamp, another key, an old or a future timestamp', () => {
    const secret = 'a-plain-secret-of-the-controller';
    const body = '{"type":"workspace.ready"}';
    const now = 1_800_000_000;
    const headers = signedHeaders(secret, 'evt-1', now, body);
    expect(verifyWebhook(secret, headers, body, now)).toBe(true);
    expect(verifyWebhook(secret, headers, '{"type":"workspace.deleted"}', now)).toBe(false);
    expect(verifyWebhook(secret, { ...headers, 'webhook-id': 'evt-2' }, body, now)).toBe(false);
    expect(verifyWebhook(secret, { ...headers, 'webhook-timestamp': String(now + 1) }, body, now)).toBe(false);
    expect(verifyWebhook('another-secret-entirely', headers, body, now)).toBe(false);
    // A replay after the tolerance, or a timestamp from the future, fails even with a valid signature.
    expect(verifyWebhook(secret, headers, body, now + 301)).toBe(false);
    expect(verifyWebhook(secret, headers, body, now - 301)).toBe(false);
    expect(verifyWebhook(secret, { ...headers, 'webhook-signature': undefined }, body, now)).toBe(false);
    expect(verifyWebhook(secret, { ...headers, 'webhook-signature': 'v1,' }, body, now)).toBe(false);
    // One of several space-separated signatures may match (key rotation).
    const both = `v1,bm90LWl0 ${headers['webhook-signature']}`;
    expect(verifyWebhook(secret, { ...headers, 'webhook-signature': both }, body, now)).toBe(true);
  });
});
