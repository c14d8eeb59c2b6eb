import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeClientMessage,
  encodeClientMessage,
  type ClientMessage,
} from '../../../../shared/backends/ecs/ssm/codec.js';

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

  // Go plugin messageparser.go DeserializeClientMessage: the payload is `input[HeaderLength+4:]` and the
  // PayloadLength field is never compared with it; Validate only hashes when PayloadLength != 0.
  it('takes the payload from HeaderLength + 4 and does not cross-check PayloadLength (as the Go parser)', () => {
    const f = handBuilt({ type: 'output_stream_data', seq: 0n, payloadType: 1, payload: Buffer.from('abc') });
    f.writeUInt32BE(4, 116); // disagrees with the 3 bytes present: ignored, digest still checked on 'abc'
    expect(decodeClientMessage(f).payload.toString()).toBe('abc');
    f.writeUInt32BE(0, 116); // PayloadLength 0: the digest is not checked at all
    f[120] = 'x'.charCodeAt(0);
    expect(decodeClientMessage(f).payload.toString()).toBe('xbc');
    expect(() => decodeClientMessage(f.subarray(0, 100))).toThrow(/shorter than the 120-byte header/);
  });

  it("locates the payload by the frame's own header length, so a wrong one fails the digest", () => {
    const f = handBuilt({ type: 'output_stream_data', seq: 0n, payloadType: 1, payload: Buffer.from('abc') });
    f.writeUInt32BE(112, 0); // payload would start at 116 (the PayloadLength bytes + 'abc')
    expect(() => decodeClientMessage(f)).toThrow(/digest mismatch/);
    f.writeUInt32BE(500, 0);
    expect(() => decodeClientMessage(f)).toThrow(/header length 500 points past the end/);
  });

  // Go plugin messageparser.go Validate (agent agentmessage.go Validate): zero HeaderLength, empty
  // MessageType and zero CreatedDate are invalid, except for start/pause_publication, which skip validation.
  it('applies Validate: header length, message type and created date, except for the publication messages', () => {
    const ok = handBuilt({ type: 'output_stream_data', seq: 0n, payloadType: 1, payload: Buffer.from('abc') });
    const noDate = Buffer.from(ok);
    noDate.writeBigUInt64BE(0n, 40);
    expect(() => decodeClientMessage(noDate)).toThrow(/created date is missing/);
    const noType = Buffer.from(ok);
    noType.fill(0x20, 4, 36);
    expect(() => decodeClientMessage(noType)).toThrow(/message type is missing/);
    const zeroHeader = Buffer.from(ok);
    zeroHeader.writeUInt32BE(0, 0);
    expect(() => decodeClientMessage(zeroHeader)).toThrow(/header length is zero/);

    const pause = handBuilt({ type: 'pause_publication', seq: 0n, payloadType: 0, payload: Buffer.from('{}') });
    pause.writeBigUInt64BE(0n, 40);
    pause.fill(0, 80, 112); // no digest either
    expect(decodeClientMessage(pause).messageType).toBe('pause_publication');
  });

  it('trims NUL and space padding from the message type', () => {
    const f = handBuilt({ type: 'acknowledge', seq: 0n, payloadType: 0, payload: Buffer.alloc(0) });
    f.fill(0, 4 + 'acknowledge'.length, 36);
    expect(decodeClientMessage(f).messageType).toBe('acknowledge');
  });

  it('refuses to encode a non-UUID id or an oversized type', () => {
    expect(() => encodeClientMessage({ ...sample, messageId: 'nope' })).toThrow(/not a UUID/);
    expect(() => encodeClientMessage({ ...sample, messageType: 'x'.repeat(33) })).toThrow(/32 ASCII/);
  });
});
