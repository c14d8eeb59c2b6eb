import { z } from 'zod';
import {
  commandEventSchema,
  commandList,
  healthBody,
  workspaceEventSchema,
  workspaceList,
} from './response-schemas.js';
import type { Route } from './route-types.js';
import {
  changesView,
  commandView,
  createWorkspaceBody,
  errorBody,
  fetchBody,
  fetchResult,
  archiveWritten,
  fileList,
  fileStat,
  resetBody,
  resetResult,
  runCommandBody,
  usageView,
  workspaceView,
} from './schemas.js';

/**
 * Builds the OpenAPI 3.1 document from the route table and the same zod schemas that validate
 * requests (z.toJSONSchema, JSON Schema 2020-12 = OpenAPI 3.1's dialect), so the two cannot drift.
 * Requests are described as they may be sent (`io: 'input'`: defaulted fields optional), responses
 * as they come back (`io: 'output'`).
 */

type JsonSchema = Record<string, unknown>;

/** Named schemas, emitted once under components.schemas and referenced by $ref. */
const REQUEST_SCHEMAS: Record<string, z.ZodType> = {
  CreateWorkspaceBody: createWorkspaceBody,
  RunCommandBody: runCommandBody,
  FetchBody: fetchBody,
  ResetBody: resetBody,
};
const RESPONSE_SCHEMAS: Record<string, z.ZodType> = {
  WorkspaceView: workspaceView,
  WorkspaceList: workspaceList,
  CommandView: commandView,
  CommandList: commandList,
  FetchResult: fetchResult,
  ResetResult: resetResult,
  ChangesView: changesView,
  UsageView: usageView,
  FileStat: fileStat,
  FileList: fileList,
  ArchiveWritten: archiveWritten,
  WorkspaceEvent: workspaceEventSchema,
  CommandEvent: commandEventSchema,
  Health: healthBody,
  Error: errorBody,
};

const REF_PREFIX = '#/components/schemas/';

export function buildOpenApiDocument(
  routes: readonly Route[],
  info = { title: 'Workspace Provider API', version: '0.1.0' },
): JsonSchema {
  const names = new Map<z.ZodType, string>();
  for (const [name, schema] of Object.entries({ ...REQUEST_SCHEMAS, ...RESPONSE_SCHEMAS })) names.set(schema, name);
  const components = { ...convertNamed(REQUEST_SCHEMAS, 'input'), ...convertNamed(RESPONSE_SCHEMAS, 'output') };

  const schemaFor = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
    const name = names.get(schema);
    return name !== undefined ? { $ref: REF_PREFIX + name } : convert(schema, io);
  };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      parameters: [...parameters(route.params, 'path'), ...parameters(route.query, 'query')],
      responses: { ...successResponses(route, schemaFor), ...errorResponses(route) },
    };
    if (route.public) operation['security'] = [];
    if (route.rawBody) {
      operation['requestBody'] = {
        required: false,
        description: route.rawBody.description,
        content: {
          [route.rawBody.contentType ?? 'application/octet-stream']: { schema: { type: 'string', format: 'binary' } },
        },
      };
    }
    if (route.body) {
      operation['requestBody'] = {
        // A body that may be `{}` may also be left out entirely.
        required: !route.body.safeParse({}).success,
        content: { 'application/json': { schema: schemaFor(route.body, 'input') } },
      };
    }
    const pathItem = paths[route.path] ?? {};
    pathItem[route.method.toLowerCase()] = operation;
    paths[route.path] = pathItem;
  }

  return {
    openapi: '3.1.0',
    info,
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'The provider token (dataDir/auth-token).' },
      },
    },
  };
}

function convert(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

/** Converts a set of named schemas together so nested named schemas become $refs to each other. */
function convertNamed(schemas: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  const { schemas: converted } = z.toJSONSchema(registry, { io, unrepresentable: 'any', uri: (id) => REF_PREFIX + id });
  const out: Record<string, JsonSchema> = {};
  for (const [id, json] of Object.entries(converted)) {
    const { $schema: _dialect, $id: _id, ...rest } = json as JsonSchema;
    out[id] = rest;
  }
  return out;
}

/** Path or query parameters from an object schema's properties. */
function parameters(schema: z.ZodType | undefined, location: 'path' | 'query'): JsonSchema[] {
  if (schema === undefined) return [];
  const json = convert(schema, 'input');
  const properties = (json['properties'] ?? {}) as Record<string, JsonSchema>;
  const required = new Set((json['required'] ?? []) as string[]);
  return Object.entries(properties).map(([name, property]) => ({
    name,
    in: location,
    required: location === 'path' || required.has(name),
    schema: property,
  }));
}

function successResponses(
  route: Route,
  schemaFor: (s: z.ZodType, io: 'input' | 'output') => JsonSchema,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [status, doc] of Object.entries(route.responses)) {
    const contentType = doc.contentType ?? 'application/json';
    if (status === '204') {
      out[status] = { description: doc.description };
      continue;
    }
    const schema =
      contentType === 'application/octet-stream' || contentType === 'application/x-tar'
        ? { type: 'string', format: 'binary' }
        : doc.schema
          ? schemaFor(doc.schema, 'output')
          : {};
    const content: Record<string, unknown> = { [contentType]: { schema } };
    if (doc.negotiated)
      content[doc.negotiated.contentType] = {
        schema: schemaFor(doc.negotiated.schema, 'output'),
        // OpenAPI has no per-media-type description: it travels as an extension beside the schema.
        'x-when': doc.negotiated.description,
      };
    out[status] = { description: doc.description, content };
  }
  return out;
}

/** The error statuses a route can answer with, all in the one error shape. */
function errorResponses(route: Route): Record<string, unknown> {
  const statuses: Array<[number, string]> = [[400, 'Bad input: `details` lists every bad field']];
  if (!route.public) statuses.push([401, 'Missing or wrong bearer token']);
  if (route.params) statuses.push([404, 'Unknown workspace or command']);
  if (route.params && route.method !== 'GET') statuses.push([409, 'The workspace or command is in the wrong state']);
  if (route.body) {
    statuses.push([413, 'Request body too large']);
    statuses.push([415, 'Request body is not JSON']);
  }
  if (route.rawBody) statuses.push([413, 'Request body too large']);
  statuses.push([500, 'Internal error (no detail is given)']);
  if (!route.public) statuses.push([503, 'Backend unavailable']);
  const error = { content: { 'application/json': { schema: { $ref: `${REF_PREFIX}Error` } } } };
  return Object.fromEntries(statuses.map(([status, description]) => [String(status), { description, ...error }]));
}
