import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeClientMessage, encodeClientMessage, type ClientMessage } from '../../../shared/backends/ecs/ssm/codec.js';

/**
 * Frames here are built byte by byte from the published layout (literal offsets, not the codec's
 * constants), so an encoder bug cannot hide behind a matching decoder bug.
 */
const ID = '00112233-4455-6677-8899-aabbccddeeff';
// The wire form puts the UUID's second 8 bytes first.
const ID_WIRE = Buffer.from('8899aabbccddeeff0011223344556677', 'hex');

function handBuilt(opts: { type: string; seq: bigint; payloadType: number; payload: Buffer }): Buffer {
  const f = Buffer.alloc(120 + opts.payload.length);
  f.writeUInt32BE(116, 0); // HeaderLength
  f.fill(0x20, 4, 36); // MessageType, space padded
  f.write(opts.type, 4, 'ascii');
  f.writeUInt32BE(1, 36); // SchemaVersion
  f.writeBigUInt64BE(1_700_000_000_123n, 40); // CreatedDate (epoch ms)
  f.writeBigInt64BE(opts.seq, 48); // SequenceNumber
  f.writeBigUInt64BE(0n, 56); // Flags
  ID_WIRE.copy(f, 64); // MessageId
  createHash('sha256').update(opts.payload).digest().copy(f, 80); // PayloadDigest
  f.writeUInt32BE(opts.payloadType, 112); // PayloadType
  f.writeUInt32BE(opts.payload.length, 116); // PayloadLength
  opts.payload.copy(f, 120);
  return f;
}

const sample: ClientMessage = {
  messageType: 'input_stream_data',
  schemaVersion: 1,
  createdDate: 1_700_000_000_123,
  sequenceNumber: 7,
  flags: 0,
  messageId: ID,
  payloadType: 1,
  payload: Buffer.from('echo hi\r'),
};

describe('ClientMessage codec', () => {
  it('encodes byte-for-byte as the spec lays it out', () => {
    const expected = handBuilt({ type: 'input_stream_data', seq: 7n, payloadType: 1, payload: sample.payload });
    const got = encodeClientMessage(sample);
    expect(got.toString('hex')).toBe(expected.toString('hex'));
    expect(got.length).toBe(120 + 8);
  });

  it('swaps the UUID halves on the wire and pads the type with spaces', () => {
    const got = encodeClientMessage(sample);
    expect(got.subarray(64, 80).toString('hex')).toBe('8899aabbccddeeff0011223344556677');
    expect(got.subarray(4 + 'input_stream_data'.length, 36).every((b) => b === 0x20)).toBe(true);
    expect(got.subarray(80, 112)).toEqual(createHash('sha256').update('echo hi\r').digest());
  });

  it('decodes a hand-built agent frame', () => {
    const payload = Buffer.from('hello\r\n');
    const msg = decodeClientMessage(handBuilt({ type: 'output_stream_data', seq: 3n, payloadType: 1, payload }));
    expect(msg).toEqual({
      messageType: 'output_stream_data',
      schemaVersion: 1,
      createdDate: 1_700_000_000_123,
      sequenceNumber: 3,
      flags: 0,
      messageId: ID,
      payloadType: 1,
      payload,
    });
  });

  it('round-trips an empty payload', () => {
    const msg = { ...sample, payload: Buffer.alloc(0), payloadType: 0 };
    expect(decodeClientMessage(encodeClientMessage(msg))).toEqual(msg);
  });

  it('rejects a corrupt digest', () => {
    const f = handBuilt({ type: 'output_stream_data', seq: 0n, payloadType: 1, payload: Buffer.from('abc') });
    f[120] = 'x'.charCodeAt(0); // payload changed after the digest was computed
    expect(() => decodeClientMessage(f)).toThrow(/digest mismatch/);
  });

  it('rejects a payload length that disagrees with the frame', () => {
    const f = handBuilt({ type: 'output_stream_data', seq: 0n, payloadType: 1, payload: Buffer.from('abc') });
    f.writeUInt32BE(4, 116);
    expect(() => decodeClientMessage(f)).toThrow(/payload length field says 4 bytes but the frame carries 3/);
    expect(() => decodeClientMessage(f.subarray(0, 100))).toThrow(/shorter than the 120-byte header/);
  });

  it('rejects a wrong header length', () => {
    const f = handBuilt({ type: 'output_stream_data', seq: 0n, payloadType: 1, payload: Buffer.from('abc') });
    f.writeUInt32BE(112, 0);
    expect(() => decodeClientMessage(f)).toThrow(/header length 112, expected 116/);
  });

  it('refuses to encode a non-UUID id or an oversized type', () => {
    expect(() => encodeClientMessage({ ...sample, messageId: 'nope' })).toThrow(/not a UUID/);
    expect(() => encodeClientMessage({ ...sample, messageType: 'x'.repeat(33) })).toThrow(/32 ASCII/);
  });
});
