import { describe, expect, it } from 'vitest';
import { dispatch } from '../../shared/api/dispatch.js';
import { buildOpenApiDocument } from '../../shared/api/openapi.js';
import { routes } from '../../shared/api/routes.js';
import { FakeWorkspaceService } from '../support/fake-service.js';

const doc = buildOpenApiDocument(routes) as any;

/** Every `$ref` anywhere in `value`. */
function refs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) refs(v, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

function resolve(ref: string): any {
  expect(ref.startsWith('#/')).toBe(true);
  return ref
    .slice(2)
    .split('/')
    .reduce<any>((node, key) => node?.[key], doc);
}

describe('openapi document', () => {
  it('is an OpenAPI 3.1 document with a bearer security scheme', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    expect(doc.components.securitySchemes.bearerAuth).toEqual(
      expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    );
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    expect(() => JSON.stringify(doc)).not.toThrow();
  });

  it('lists every route with a unique operationId, summary, responses and its path parameters', () => {
    const ids = new Set<string>();
    for (const route of routes) {
      const op = doc.paths[route.path]?.[route.method.toLowerCase()];
      expect(op, `${route.method} ${route.path}`).toBeDefined();
      expect(ids.has(op.operationId)).toBe(false);
      ids.add(op.operationId);
      expect(op.summary).toEqual(expect.any(String));
      const pathParams = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      expect(op.parameters.filter((p: any) => p.in === 'path').map((p: any) => p.name)).toEqual(pathParams);
      for (const p of op.parameters.filter((p: any) => p.in === 'path')) {
        expect(p.required).toBe(true);
        expect(p.schema.pattern).toEqual(expect.any(String));
      }
      expect(Object.keys(op.responses)).toEqual(
        expect.arrayContaining([...Object.keys(route.responses), '400', '500']),
      );
    }
    expect(Object.values(doc.paths).flatMap((p: any) => Object.keys(p))).toHaveLength(routes.length);
  });

  it('has request body schemas for every route that takes a body, as they may be sent', () => {
    for (const route of routes.filter((r) => r.body)) {
      const op = doc.paths[route.path][route.method.toLowerCase()];
      const schema = op.requestBody.content['application/json'].schema;
      const resolved = schema.$ref ? resolve(schema.$ref) : schema;
      expect(resolved.type).toBe('object');
      expect(resolved.additionalProperties).toBe(false);
      expect(Object.keys(resolved.properties).length).toBeGreaterThan(0);
      expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['413', '415']));
    }
    const run = resolve(
      doc.paths['/workspaces/{id}/commands'].post.requestBody.content['application/json'].schema.$ref,
    );
    expect(run.properties.argv).toMatchObject({ type: 'array', items: { type: 'string' } });
    expect(run.required ?? []).not.toContain('stdinEncoding'); // has a default: optional on input
    expect(doc.paths['/workspaces/{id}/commands'].post.requestBody.required).toBe(true);
    expect(doc.paths['/workspaces'].post.requestBody.required).toBe(false); // {} is a valid create body
  });

  it('documents the command read query and the SSE routes', () => {
    const query = doc.paths['/workspaces/{id}/commands/{cid}'].get.parameters.filter((p: any) => p.in === 'query');
    expect(query.map((p: any) => p.name).sort()).toEqual(['limit', 'stderrOffset', 'stdoutOffset', 'waitMs']);
    expect(query.every((p: any) => p.required === false)).toBe(true);
    const events = doc.paths['/workspaces/{id}/commands/{cid}/events'].get.responses['200'].content;
    expect(Object.keys(events)).toEqual(['text/event-stream']);
  });

  it('documents the files routes: raw bytes in and out, Range answers, the query parameters', () => {
    const files = doc.paths['/workspaces/{id}/files'];
    expect(Object.keys(files.get.responses['200'].content)).toEqual(['application/octet-stream']);
    expect(files.get.responses['206']).toBeDefined();
    expect(files.get.responses['416']).toBeDefined();
    expect(files.get.responses['409']).toBeDefined();
    expect(files.put.requestBody.content['application/octet-stream'].schema).toEqual({
      type: 'string',
      format: 'binary',
    });
    expect(Object.keys(files.put.responses)).toEqual(expect.arrayContaining(['200', '400', '404', '409', '413']));
    expect(files.put.parameters.filter((p: any) => p.in === 'query').map((p: any) => p.name)).toEqual(['path', 'mode']);
    expect(files.delete.responses['204'].content).toBeUndefined();
    const list = doc.paths['/workspaces/{id}/files/list'].get;
    expect(list.parameters.find((p: any) => p.name === 'recursive').schema.enum).toEqual(['true', 'false']);
    expect(resolve(list.responses['200'].content['application/json'].schema.$ref).properties.truncated).toBeDefined();
    expect(doc.paths['/workspaces/{id}/files/stat'].get.responses['200']).toBeDefined();
  });

  it('documents shell sessions: create, run (200/202), interrupt, get with waitMs, list, delete', () => {
    const deref = (schema: any): any => (schema.$ref ? resolve(schema.$ref) : schema);
    const create = doc.paths['/workspaces/{id}/sessions'].post;
    expect(Object.keys(deref(create.requestBody.content['application/json'].schema).properties).sort()).toEqual([
      'cwd',
      'env',
      'shell',
    ]);
    const view = deref(create.responses['201'].content['application/json'].schema);
    expect(view.properties.state.enum).toEqual(['idle', 'busy', 'lost', 'closed']);
    expect(doc.paths['/workspaces/{id}/sessions'].get.responses['200']).toBeDefined();
    const run = doc.paths['/workspaces/{id}/sessions/{sid}/run'].post;
    expect(deref(run.requestBody.content['application/json'].schema).required).toEqual(['command']);
    expect(Object.keys(run.responses)).toEqual(expect.arrayContaining(['200', '202', '404', '409']));
    const runView = deref(run.responses['200'].content['application/json'].schema);
    expect(runView.properties.state.enum).toEqual(['running', 'exited', 'killed', 'interrupted', 'lost']);
    const one = doc.paths['/workspaces/{id}/sessions/{sid}'];
    expect(one.get.parameters.find((p: any) => p.name === 'sid').schema.pattern).toContain('sess-');
    expect(one.get.parameters.filter((p: any) => p.in === 'query').map((p: any) => p.name)).toEqual(['waitMs']);
    expect(one.delete.responses['200']).toBeDefined();
    expect(doc.paths['/workspaces/{id}/sessions/{sid}/interrupt'].post.responses['200']).toBeDefined();
  });

  it('documents fork and snapshots: their bodies, the 202/201 answers and the snapshot id pattern', () => {
    const fork = doc.paths['/workspaces/{id}/fork'].post;
    const deref = (schema: any): any => (schema.$ref ? resolve(schema.$ref) : schema);
    const forkBody = deref(fork.requestBody.content['application/json'].schema);
    expect(forkBody.required).toEqual(['count']);
    expect(forkBody.properties.count).toMatchObject({ type: 'integer', minimum: 1 });
    const forkAnswer = deref(fork.responses['202'].content['application/json'].schema);
    expect(Object.keys(forkAnswer.properties).sort()).toEqual(['snapshot', 'workspaces']);
    expect(fork.parameters.filter((p: any) => p.in === 'query').map((p: any) => p.name)).toEqual(['waitMs']);
    const create = doc.paths['/workspaces/{id}/snapshots'].post;
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['201', '202', '409']));
    const one = doc.paths['/snapshots/{sid}'];
    expect(one.get.parameters[0].schema.pattern).toContain('snap-');
    expect(one.delete.responses['204']).toBeDefined();
    expect(doc.paths['/snapshots'].get.responses['200']).toBeDefined();
    const ws = deref(doc.paths['/workspaces'].post.requestBody.content['application/json'].schema);
    expect(ws.properties.fromSnapshot.pattern).toContain('snap-');
  });

  it('documents the archive routes: a tar out, a tar in (raw body), their limits', () => {
    const archive = doc.paths['/workspaces/{id}/archive'];
    expect(Object.keys(archive.get.responses['200'].content)).toEqual(['application/x-tar']);
    expect(archive.get.responses['200'].content['application/x-tar'].schema).toEqual({
      type: 'string',
      format: 'binary',
    });
    expect(Object.keys(archive.get.responses)).toEqual(expect.arrayContaining(['200', '400', '404', '409', '413']));
    expect(archive.get.summary).toMatch(/Lambda: 4 MiB/);
    expect(Object.keys(archive.put.requestBody.content)).toEqual(['application/x-tar']);
    expect(Object.keys(archive.put.responses)).toEqual(expect.arrayContaining(['200', '400', '404', '409', '413']));
    expect(archive.put.summary).toMatch(/Lambda: 2\.5 MiB/);
    expect(archive.put.parameters.filter((p: any) => p.in === 'query').map((p: any) => p.name)).toEqual(['path']);
    const written = resolve(archive.put.responses['200'].content['application/json'].schema.$ref);
    expect(Object.keys(written.properties).sort()).toEqual(['entries', 'path']);
  });

  it('every $ref resolves, and no embedded schema carries its own $schema', () => {
    for (const ref of refs(doc)) expect(resolve(ref), ref).toBeDefined();
    expect(JSON.stringify(doc.paths)).not.toContain('$schema');
    expect(JSON.stringify(doc.components)).not.toContain('"$schema"');
  });

  it('leaves /healthz public and requires auth elsewhere', () => {
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    expect(doc.paths['/healthz'].get.responses['401']).toBeUndefined();
    expect(doc.paths['/workspaces'].get.security).toBeUndefined();
    expect(doc.paths['/workspaces'].get.responses['401']).toBeDefined();
  });

  it('is served at GET /openapi.json', async () => {
    const res = await dispatch(routes, new FakeWorkspaceService(), {
      method: 'GET',
      path: '/openapi.json',
      query: {},
      headers: {},
      rawBody: undefined,
    });
    expect('body' in res && res.status === 200 && res.body).toEqual(doc);
  });
});
