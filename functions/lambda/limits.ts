import type { EntryLimits } from '../../shared/api/route-types.js';

/**
 * What the Lambda API can carry: AWS caps a synchronous invocation's request and response payload at
 * 6 MB each, where the HTTP body travels as a JSON string inside the event / the function's result
 * (every `"` and `\` of it escaped once more, so up to twice its size). The local server keeps its
 * configured limits; here they are cut so that no request we accept can need an answer over the cap.
 */

/** Lambda's synchronous payload limit, request and response each (6 MB): a function result's JSON. */
export const LAMBDA_PAYLOAD_BYTES = 6_291_456;

/**
 * Request bodies beyond this get 413: at most 5 MiB in the event, and what an answer echoes of a
 * request (a command's argv) at most 5 MiB in the result, leaving ≥ 1 MB for output. Inline stdin
 * above ~1.8 MiB (base64) needs the local server, or goes in pieces.
 */
export const LAMBDA_MAX_BODY_BYTES = 2.5 * 1024 * 1024;

/** Room kept for the result's envelope: statusCode, headers (location), isBase64Encoded. */
const ENVELOPE_BYTES = 16 * 1024;

export const LAMBDA_LIMITS: EntryLimits = {
  // Two streams of text fit at about this much each; more would be read over ECS Exec and thrown away.
  maxReadBytes: 2 * 1024 * 1024,
  answer: { maxBytes: LAMBDA_PAYLOAD_BYTES - ENVELOPE_BYTES, jsonDepth: 2 },
  // A file travels base64 in the result (4/3 of its size): 4 MiB fits; larger files are read in ranges.
  maxFileBytes: 4 * 1024 * 1024,
};
