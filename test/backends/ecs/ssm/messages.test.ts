import { describe, expect, it } from 'vitest';
import type { ClientMessage } from '../../../../shared/backends/ecs/ssm/codec.js';
import {
  buildAcknowledge,
  buildHandshakeResponse,
  buildInputMessage,
  buildTerminalSize,
  buildTokenFrame,
  parseHandshakeRequest,
  requestedSessionType,
} from '../../../../shared/backends/ecs/ssm/messages.js';

const request = Buffer.from(
  JSON.stringify({
    AgentVersion: '3.3.0.0',
    RequestedClientActions: [
      { ActionType: 'SessionType', ActionParameters: { SessionType: 'InteractiveCommands', Properties: null } },
      { ActionType: 'KMSEncryption', ActionParameters: { KMSKeyId: 'k' } },
    ],
  }),
);

describe('SSM messages', () => {
  it('token frame carries the token and schema version', () => {
    const f = JSON.parse(buildTokenFrame({ tokenValue: 'tok', clientId: 'c', requestId: 'r' }));
    expect(f).toEqual({
      MessageSchemaVersion: '1.0',
      RequestId: 'r',
      TokenValue: 'tok',
      ClientId: 'c',
      ClientVersion: '1.2.0.0',
    });
  });

  it('acknowledge names the acknowledged message', () => {
    const of: ClientMessage = {
      messageType: 'output_stream_data',
      schemaVersion: 1,
      createdDate: 1,
      sequenceNumber: 42,
      flags: 0,
      messageId: '00112233-4455-6677-8899-aabbccddeeff',
      payloadType: 1,
      payload: Buffer.from('x'),
    };
    const ack = buildAcknowledge(of, 5);
    expect(ack).toMatchObject({
      messageType: 'acknowledge',
      sequenceNumber: 0,
      flags: 3,
      schemaVersion: 1,
      createdDate: 5,
    });
    expect(JSON.parse(ack.payload.toString())).toEqual({
      AcknowledgedMessageType: 'output_stream_data',
      AcknowledgedMessageId: '00112233-4455-6677-8899-aabbccddeeff',
      AcknowledgedMessageSequenceNumber: 42,
      IsSequentialMessage: true,
    });
  });

  it('handshake response echoes SessionType with status 1 and refuses KMS', () => {
    const req = parseHandshakeRequest(request);
    expect(requestedSessionType(req)).toBe('InteractiveCommands');
    const resp = JSON.parse(buildHandshakeResponse(req).toString());
    expect(resp.ClientVersion).toBe('1.2.0.0');
    expect(resp.ProcessedClientActions[0]).toMatchObject({ ActionType: 'SessionType', ActionStatus: 1 });
    expect(resp.ProcessedClientActions[1]).toMatchObject({ ActionType: 'KMSEncryption', ActionStatus: 3 });
  });

  // Go plugin streaming.go handleHandshakeRequest: every failed/unsupported action's text is also in
  // Errors (null when none — a nil Go slice); ProcessSessionTypeHandshakeAction fails unknown session types.
  it('handshake response lists failures in Errors (null when none) and fails unknown session types', () => {
    const only = (type: string) =>
      parseHandshakeRequest(
        Buffer.from(
          JSON.stringify({
            AgentVersion: '3',
            RequestedClientActions: [{ ActionType: 'SessionType', ActionParameters: { SessionType: type } }],
          }),
        ),
      );
    const good = JSON.parse(buildHandshakeResponse(only('Standard_Stream')).toString());
    expect(good.Errors).toBeNull();
    expect(good.ProcessedClientActions).toEqual([
      { ActionType: 'SessionType', ActionStatus: 1, ActionResult: null, Error: '' },
    ]);
    const bad = JSON.parse(buildHandshakeResponse(only('Bogus')).toString());
    expect(bad.ProcessedClientActions[0]).toMatchObject({
      ActionStatus: 2,
      Error: expect.stringContaining('Unknown session type Bogus'),
    });
    expect(bad.Errors).toEqual(['Unknown session type Bogus']);
    const kms = JSON.parse(buildHandshakeResponse(parseHandshakeRequest(request)).toString());
    expect(kms.Errors).toEqual(['Unsupported action KMSEncryption']);
  });

  it('rejects a malformed handshake request', () => {
    expect(() => parseHandshakeRequest(Buffer.from('{'))).toThrow(/not JSON/);
    expect(() => parseHandshakeRequest(Buffer.from('{"AgentVersion":"1"}'))).toThrow(/RequestedClientActions/);
  });

  it('input and size messages', () => {
    const m = buildInputMessage(4, buildTerminalSize(120, 40), 3, 9);
    expect(m).toMatchObject({ messageType: 'input_stream_data', sequenceNumber: 4, payloadType: 3, flags: 0 });
    expect(JSON.parse(m.payload.toString())).toEqual({ cols: 120, rows: 40 });
  });
});
