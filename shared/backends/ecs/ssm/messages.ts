/**
 * Builders and parsers for the individual SSM data-channel messages (payload shapes after the
 * Go `aws/session-manager-plugin`: `clientmessage.go`, `handshakemessage.go`, `streaming.go`).
 */
import { randomUUID } from 'node:crypto';
import { BackendUnavailableError } from '../../../contract/errors.js';
import { MessageType, PayloadType, type ClientMessage } from './codec.js';

/** Version we report to the agent; the agent only checks it for feature gates we do not use. */
export const CLIENT_VERSION = '1.2.0.0';

/** ActionStatus values of a processed handshake action. */
const ActionStatus = { Success: 1, Failed: 2, Unsupported: 3 } as const;

export interface TokenFrameInput {
  /** `session.tokenValue` from ECS `ExecuteCommand`. Secret: never log the returned text. */
  tokenValue: string;
  requestId?: string;
  clientId?: string;
  clientVersion?: string;
}

/** The first (text) websocket frame, which authenticates the data channel. */
export function buildTokenFrame(input: TokenFrameInput): string {
  return JSON.stringify({
    MessageSchemaVersion: '1.0',
    RequestId: input.requestId ?? randomUUID(),
    TokenValue: input.tokenValue,
    ClientId: input.clientId ?? randomUUID(),
    ClientVersion: input.clientVersion ?? CLIENT_VERSION,
  });
}

/**
 * One `input_stream_data` message at `sequenceNumber` of our stream. Handshake responses, terminal
 * sizes and keystrokes all travel as input stream messages and share the numbering.
 */
export function buildInputMessage(
  sequenceNumber: number,
  payload: Buffer,
  payloadType: number = PayloadType.Output,
  now: number = Date.now(),
): ClientMessage {
  return {
    messageType: MessageType.InputStreamData,
    schemaVersion: 1,
    createdDate: now,
    sequenceNumber,
    flags: 0,
    messageId: randomUUID(),
    payloadType,
    payload,
  };
}

export interface AcknowledgeContent {
  AcknowledgedMessageType: string;
  AcknowledgedMessageId: string;
  AcknowledgedMessageSequenceNumber: number;
  IsSequentialMessage: boolean;
}

/** The `acknowledge` for a received stream message (sequence 0, flags SYN|FIN, as the plugin does). */
export function buildAcknowledge(of: ClientMessage, now: number = Date.now()): ClientMessage {
  const content: AcknowledgeContent = {
    AcknowledgedMessageType: of.messageType,
    AcknowledgedMessageId: of.messageId,
    AcknowledgedMessageSequenceNumber: of.sequenceNumber,
    IsSequentialMessage: true,
  };
  return {
    messageType: MessageType.Acknowledge,
    schemaVersion: 1,
    createdDate: now,
    sequenceNumber: 0,
    flags: 3,
    messageId: randomUUID(),
    payloadType: PayloadType.None,
    payload: Buffer.from(JSON.stringify(content)),
  };
}

function parseJson(payload: Buffer, what: string): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw new BackendUnavailableError(`ssm data channel: ${what} payload is not JSON`, err);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A JSON object payload, or an empty record when it is not one (for the informational messages). */
function lenientRecord(payload: Buffer): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(payload.toString('utf8'));
    return isRecord(v) ? v : {};
  } catch {
    return {};
  }
}

/** Parse an `acknowledge` payload. Throws BackendUnavailableError if malformed. */
export function parseAcknowledge(payload: Buffer): AcknowledgeContent {
  const v = parseJson(payload, 'acknowledge');
  if (!isRecord(v) || typeof v.AcknowledgedMessageSequenceNumber !== 'number') {
    throw new BackendUnavailableError('ssm data channel: acknowledge payload lacks a sequence number');
  }
  return {
    AcknowledgedMessageType: String(v.AcknowledgedMessageType ?? ''),
    AcknowledgedMessageId: String(v.AcknowledgedMessageId ?? ''),
    AcknowledgedMessageSequenceNumber: v.AcknowledgedMessageSequenceNumber,
    IsSequentialMessage: v.IsSequentialMessage === true,
  };
}

export interface RequestedClientAction {
  ActionType: string;
  ActionParameters?: unknown;
}

export interface HandshakeRequest {
  AgentVersion: string;
  RequestedClientActions: RequestedClientAction[];
}

/** Parse the agent's HandshakeRequest (payload type 5). Throws BackendUnavailableError if malformed. */
export function parseHandshakeRequest(payload: Buffer): HandshakeRequest {
  const v = parseJson(payload, 'handshake request');
  if (!isRecord(v) || !Array.isArray(v.RequestedClientActions)) {
    throw new BackendUnavailableError('ssm data channel: handshake request lacks RequestedClientActions');
  }
  const actions: RequestedClientAction[] = [];
  for (const a of v.RequestedClientActions) {
    if (!isRecord(a) || typeof a.ActionType !== 'string') {
      throw new BackendUnavailableError('ssm data channel: handshake request has an action without ActionType');
    }
    actions.push({ ActionType: a.ActionType, ActionParameters: a.ActionParameters });
  }
  return { AgentVersion: typeof v.AgentVersion === 'string' ? v.AgentVersion : '', RequestedClientActions: actions };
}

/** The session type the agent asked for (e.g. `InteractiveCommands`), or undefined. */
export function requestedSessionType(req: HandshakeRequest): string | undefined {
  const action = req.RequestedClientActions.find((a) => a.ActionType === 'SessionType');
  const params = action?.ActionParameters;
  return isRecord(params) && typeof params.SessionType === 'string' ? params.SessionType : undefined;
}

/** Session types the Go plugin accepts in the SessionType action (`ProcessSessionTypeHandshakeAction`). */
const KNOWN_SESSION_TYPES = ['Standard_Stream', 'InteractiveCommands', 'NonInteractiveCommands', 'Port'] as const;

/**
 * HandshakeResponse payload (payload type 6), shaped like the Go plugin's `handleHandshakeRequest`
 * (streaming.go): one ProcessedClientAction per requested action, in order, and every failure text
 * also listed in `Errors` (`null` when there is none, as Go marshals a nil slice).
 *  - `SessionType` with a known type → Success; an unknown type → Failed "Unknown session type X".
 *  - anything else (notably `KMSEncryption`, which we deliberately do not implement — the cluster
 *    must not set a KMS key) → not processed. Go leaves ActionStatus at its zero value and puts 3 in
 *    ActionResult there; we send ActionStatus 3 (Unsupported). The agent (`handleHandshakeResponse`)
 *    treats every status other than 1 the same way — it cancels the session with the error — so the
 *    observable outcome is identical and ours is the well-formed one.
 */
export function buildHandshakeResponse(req: HandshakeRequest, clientVersion: string = CLIENT_VERSION): Buffer {
  const errors: string[] = [];
  const processed = req.RequestedClientActions.map((a) => {
    if (a.ActionType === 'SessionType') {
      const params = isRecord(a.ActionParameters) ? a.ActionParameters : {};
      const type = typeof params.SessionType === 'string' ? params.SessionType : '';
      if ((KNOWN_SESSION_TYPES as readonly string[]).includes(type)) {
        return { ActionType: a.ActionType, ActionStatus: ActionStatus.Success, ActionResult: null, Error: '' };
      }
      const error = `Failed to process action SessionType: Unknown session type ${type}`;
      errors.push(`Unknown session type ${type}`);
      return { ActionType: a.ActionType, ActionStatus: ActionStatus.Failed, ActionResult: null, Error: error };
    }
    const error = `Unsupported action ${a.ActionType}`;
    errors.push(error);
    return { ActionType: a.ActionType, ActionStatus: ActionStatus.Unsupported, ActionResult: null, Error: error };
  });
  return Buffer.from(
    JSON.stringify({
      ClientVersion: clientVersion,
      ProcessedClientActions: processed,
      Errors: errors.length ? errors : null,
    }),
  );
}

/** Terminal size payload (payload type 3). */
export function buildTerminalSize(cols: number, rows: number): Buffer {
  return Buffer.from(JSON.stringify({ cols, rows }));
}

export interface ChannelClosed {
  SessionId: string;
  /** The agent's reason text, if any. */
  Output: string;
}

/** Parse a `channel_closed` payload; tolerant, because it only carries a reason. */
export function parseChannelClosed(payload: Buffer): ChannelClosed {
  const v = lenientRecord(payload);
  return {
    SessionId: typeof v.SessionId === 'string' ? v.SessionId : '',
    Output: typeof v.Output === 'string' ? v.Output : '',
  };
}
