import type { z } from 'zod';
import type { WorkspaceService } from '../service/types.js';
import type { AnswerLimit } from './answer-fit.js';

/**
 * Types of the route table. Deliberately free of Node `http` types: the local server and the Lambda
 * handlers both drive the same table through shared/api/dispatch.ts.
 */

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** One Server-Sent Event: written as `event: <event>\ndata: <JSON of data>\n\n`. */
export interface SseEvent {
  event: string;
  data: unknown;
}

export type HandlerResult =
  | { status: number; body: unknown; headers?: Record<string, string> }
  | { status: number; stream: AsyncIterable<SseEvent>; headers?: Record<string, string> }
  /** Raw bytes (application/octet-stream unless `headers` say otherwise): a file's content. */
  | { status: number; bytes: Buffer; headers?: Record<string, string> };

export interface ResponseDoc {
  description: string;
  schema?: z.ZodType;
  /** Default application/json. */
  contentType?: 'application/json' | 'text/event-stream' | 'application/octet-stream' | 'application/x-tar';
  /** The same status in another content type, answered when the request's Accept prefers it (accept.ts). */
  negotiated?: { contentType: 'application/json'; schema: z.ZodType; description: string };
}

type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

/** What one entry point's transport can carry beyond the request body limit (none: the local server). */
export interface EntryLimits {
  /** Most output bytes per stream read for one answer: a larger `limit` is cut to it. */
  maxReadBytes?: number;
  /** Answers with command output are cut to fit (answer-fit.ts). */
  answer?: AnswerLimit;
  /** Most bytes of a file (or a directory's tar) one answer carries (larger: 413; a file: read it in ranges). */
  maxFileBytes?: number;
}

export interface HandlerInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  /** The request body as bytes, on a `rawBody` route (else undefined). */
  rawBody: Buffer | undefined;
  /** Request headers, names lower-case (a route reads only what it documents, e.g. Range). */
  headers: Record<string, string | undefined>;
  /** Aborted when the client goes away; SSE handlers hand it to the service's watch*. */
  signal: AbortSignal;
  limits: EntryLimits;
}

interface RouteFields {
  method: HttpMethod;
  /** OpenAPI-style template: `/workspaces/{id}/commands/{cid}`. */
  path: string;
  operationId: string;
  summary: string;
  /** No bearer token needed (only /healthz). */
  public?: boolean;
  /**
   * The request body is raw bytes of any content type, handed to the handler as a Buffer (never parsed),
   * up to the entry point's raw body limit (DispatchOptions.maxRawBodyBytes) instead of the JSON one.
   */
  rawBody?: { description: string /** Documented type (default application/octet-stream). */; contentType?: string };
  responses: Record<number, ResponseDoc>;
}

/** A route as the dispatcher sees it: validated inputs arrive as `unknown`-typed but already parsed. */
export interface Route extends RouteFields {
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  handler(service: WorkspaceService, input: HandlerInput<unknown, unknown, unknown>): Promise<HandlerResult>;
}

/**
 * Declares a route with its handler typed from its own schemas, then erases the types so routes of
 * different shapes fit in one list. Safe because dispatch only calls the handler with values those
 * same schemas produced.
 */
export function defineRoute<
  P extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(
  route: RouteFields & {
    params?: P;
    query?: Q;
    body?: B;
    handler(service: WorkspaceService, input: HandlerInput<Out<P>, Out<Q>, Out<B>>): Promise<HandlerResult>;
  },
): Route {
  return route as unknown as Route;
}
