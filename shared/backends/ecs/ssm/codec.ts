/**
 * Binary `ClientMessage` frame of the SSM data channel (what ECS Exec speaks over its websocket).
 * Layout (all integers big-endian), after the Apache-2.0 Go `aws/session-manager-plugin`
 * (`src/message/clientmessage.go`, `messageparser.go`):
 *
 *   offset  size  field
 *        0     4  HeaderLength   u32, always 116 (= offset of PayloadLength; PayloadLength is NOT counted)
 *        4    32  MessageType    ASCII, right-padded with spaces
 *       36     4  SchemaVersion  u32
 *       40     8  CreatedDate    u64, epoch milliseconds
 *       48     8  SequenceNumber i64
 *       56     8  Flags          u64 (bit 0 SYN, bit 1 FIN)
 *       64    16  MessageId      UUID bytes with the two 8-byte halves swapped (bytes 8..15 first)
 *       80    32  PayloadDigest  SHA-256 of the payload
 *      112     4  PayloadType    u32 (see PayloadType)
 *      116     4  PayloadLength  u32
 *      120     n  Payload
 */
import { createHash } from 'node:crypto';
import { BackendUnavailableError } from '../../../contract/errors.js';

const HEADER_LENGTH = 116;
/** Bytes before the payload: the header plus the 4-byte PayloadLength field. */
const PAYLOAD_OFFSET = HEADER_LENGTH + 4;
const MESSAGE_TYPE_LENGTH = 32;

/** Field offsets, exported so tests and debugging tools can name them. */
const OFFSETS = {
  headerLength: 0,
  messageType: 4,
  schemaVersion: 36,
  createdDate: 40,
  sequenceNumber: 48,
  flags: 56,
  messageId: 64,
  payloadDigest: 80,
  payloadType: 112,
  payloadLength: 116,
  payload: 120,
} as const;

/** Message types we send or react to (the agent may send others; decode keeps them as strings). */
export const MessageType = {
  InputStreamData: 'input_stream_data',
  OutputStreamData: 'output_stream_data',
  Acknowledge: 'acknowledge',
  ChannelClosed: 'channel_closed',
  StartPublication: 'start_publication',
  PausePublication: 'pause_publication',
} as const;

/** What the payload of a stream message is. 0 (none) is used by `acknowledge`. */
export const PayloadType = {
  None: 0,
  Output: 1,
  Error: 2,
  Size: 3,
  Parameter: 4,
  HandshakeRequest: 5,
  HandshakeResponse: 6,
  HandshakeComplete: 7,
  EncChallengeRequest: 8,
  EncChallengeResponse: 9,
  Flag: 10,
  StdErr: 11,
  ExitCode: 12,
} as const;

export interface ClientMessage {
  messageType: string;
  schemaVersion: number;
  /** Epoch milliseconds. */
  createdDate: number;
  /** Position in the sender's stream (each side numbers its own stream messages from 0). */
  sequenceNumber: number;
  flags: number;
  /** Canonical lowercase UUID text, e.g. `0a1b2c3d-...`. */
  messageId: string;
  payloadType: number;
  payload: Buffer;
}

function protocolError(what: string): BackendUnavailableError {
  return new BackendUnavailableError(`ssm data channel: ${what}`);
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** UUID text → 16 wire bytes (halves swapped). Throws BackendUnavailableError on malformed text. */
function uuidToWire(id: string): Buffer {
  if (!UUID_RE.test(id)) throw protocolError(`message id is not a UUID: '${id}'`);
  const raw = Buffer.from(id.replace(/-/g, ''), 'hex');
  return Buffer.concat([raw.subarray(8, 16), raw.subarray(0, 8)]);
}

/** 16 wire bytes (halves swapped) → canonical UUID text. */
function uuidFromWire(wire: Buffer): string {
  const raw = Buffer.concat([wire.subarray(8, 16), wire.subarray(0, 8)]).toString('hex');
  return `${raw.slice(0, 8)}-${raw.slice(8, 12)}-${raw.slice(12, 16)}-${raw.slice(16, 20)}-${raw.slice(20)}`;
}

/**
 * Serialise a message. The digest and PayloadLength are computed here, never taken from the input.
 * Throws BackendUnavailableError if the message type does not fit 32 ASCII bytes or the id is not a UUID.
 */
export function encodeClientMessage(msg: ClientMessage): Buffer {
  if (msg.messageType.length > MESSAGE_TYPE_LENGTH || !/^[\x20-\x7e]*$/.test(msg.messageType)) {
    throw protocolError(`message type does not fit 32 ASCII bytes: '${msg.messageType}'`);
  }
  const out = Buffer.alloc(PAYLOAD_OFFSET + msg.payload.length);
  out.writeUInt32BE(HEADER_LENGTH, OFFSETS.headerLength);
  out.write(msg.messageType.padEnd(MESSAGE_TYPE_LENGTH, ' '), OFFSETS.messageType, 'ascii');
  out.writeUInt32BE(msg.schemaVersion, OFFSETS.schemaVersion);
  out.writeBigUInt64BE(BigInt(msg.createdDate), OFFSETS.createdDate);
  out.writeBigInt64BE(BigInt(msg.sequenceNumber), OFFSETS.sequenceNumber);
  out.writeBigUInt64BE(BigInt(msg.flags), OFFSETS.flags);
  uuidToWire(msg.messageId).copy(out, OFFSETS.messageId);
  sha256(msg.payload).copy(out, OFFSETS.payloadDigest);
  out.writeUInt32BE(msg.payloadType, OFFSETS.payloadType);
  out.writeUInt32BE(msg.payload.length, OFFSETS.payloadLength);
  msg.payload.copy(out, PAYLOAD_OFFSET);
  return out;
}

/**
 * Parse and validate one frame the way the Go peers do (plugin `messageparser.go`
 * `DeserializeClientMessage` + `Validate`; the agent's `agentmessage.go` is the same minus the digest):
 *  - the fields sit at fixed offsets; the payload starts at HeaderLength + 4 (HeaderLength is read
 *    from the frame, not assumed), and the PayloadLength field is NOT compared with the bytes present;
 *  - `start_publication` / `pause_publication` skip validation entirely;
 *  - otherwise HeaderLength must be non-zero, MessageType non-empty, CreatedDate non-zero, and when
 *    the PayloadLength field is non-zero the SHA-256 of the payload bytes must equal PayloadDigest.
 * Throws BackendUnavailableError when a check fails or the frame is too short to hold the fields.
 * (What a caller does with a rejected frame is its business; `SsmSession` drops it unacknowledged,
 * as the plugin does, so the agent resends it.)
 */
export function decodeClientMessage(buf: Buffer): ClientMessage {
  if (buf.length < PAYLOAD_OFFSET) {
    throw protocolError(`frame of ${buf.length} bytes is shorter than the ${PAYLOAD_OFFSET}-byte header`);
  }
  const headerLength = buf.readUInt32BE(OFFSETS.headerLength);
  const messageType = buf
    .subarray(OFFSETS.messageType, OFFSETS.messageType + MESSAGE_TYPE_LENGTH)
    .toString('ascii')
    .replace(/^\0+|\0+$/g, '')
    .trim();
  const createdDate = Number(buf.readBigUInt64BE(OFFSETS.createdDate));
  const payloadStart = headerLength + 4;
  if (payloadStart > buf.length) {
    throw protocolError(`header length ${headerLength} points past the end of a ${buf.length}-byte frame`);
  }
  const payload = Buffer.from(buf.subarray(payloadStart));
  const payloadLength = buf.readUInt32BE(OFFSETS.payloadLength);
  const skipValidation = messageType === MessageType.StartPublication || messageType === MessageType.PausePublication;
  if (!skipValidation) {
    if (headerLength === 0) throw protocolError('header length is zero');
    if (messageType === '') throw protocolError('message type is missing');
    if (createdDate === 0) throw protocolError('created date is missing');
    const digest = buf.subarray(OFFSETS.payloadDigest, OFFSETS.payloadDigest + 32);
    if (payloadLength !== 0 && !sha256(payload).equals(digest)) {
      throw protocolError('payload digest mismatch (frame corrupt)');
    }
  }
  return {
    messageType,
    schemaVersion: buf.readUInt32BE(OFFSETS.schemaVersion),
    createdDate,
    sequenceNumber: Number(buf.readBigInt64BE(OFFSETS.sequenceNumber)),
    flags: Number(buf.readBigUInt64BE(OFFSETS.flags)),
    messageId: uuidFromWire(buf.subarray(OFFSETS.messageId, OFFSETS.messageId + 16)),
    payloadType: buf.readUInt32BE(OFFSETS.payloadType),
    payload,
  };
}
