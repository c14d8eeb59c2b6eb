import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { WspApiError, WspTimeoutError, type WspClient } from '../../shared/client/client.js';
import { type Progress, TOOLS } from './tools.js';

/**
 * `wsp mcp`: the provider's workspaces as MCP tools (tools.ts), over stdio, each call forwarded to a
 * running provider through the typed client. A tool answers its result as JSON text and as
 * structuredContent; a failure is an `isError` result carrying the API's error code and message (and
 * details: the bad fields of a 400), never a protocol error, so the agent sees why.
 */

const INSTRUCTIONS =
  'Workspace Provider: isolated workspaces with the project checked out and set up. Start with create_workspace ' +
  '(or list_workspaces), then run_command / session_* / read_file / write_file / list_files with its workspaceId; ' +
  'changes shows your diff, reset throws it away, fork copies the workspace, delete_workspace when done.';

function createMcpServer(client: WspClient): McpServer {
  const server = new McpServer({ name: 'wsp', version: '0.1.0' }, { instructions: INSTRUCTIONS });
  for (const tool of TOOLS) {
    server.registerTool(
      tool.name,
      { description: tool.description, inputSchema: tool.input, annotations: tool.annotations },
      async (args, extra): Promise<CallToolResult> => {
        const progress = progressReporter(extra, tool.name);
        try {
          const result = await tool.run(client, args, progress.report);
          return { content: [{ type: 'text', text: JSON.stringify(result, null, 2) }], structuredContent: result };
        } catch (error) {
          return errorResult(error);
        } finally {
          progress.stop();
        }
      },
    );
  }
  return server;
}

/** How often a call still working says so, when its caller asked for progress (WSP_MCP_HEARTBEAT_MS: tests). */
const HEARTBEAT_MS = Number(process.env.WSP_MCP_HEARTBEAT_MS) || 15_000;

/**
 * MCP progress notifications for one call, when its request carried a progressToken: each thing the
 * tool reports (a provisioning step, forks settled), and a heartbeat while nothing else is said. Many
 * MCP clients give up on a call after 60 s unless progress comes (the SDK's resetTimeoutOnProgress); a
 * setup or a test run takes longer. Without a token nothing is sent (the spec allows no unasked progress).
 */
function progressReporter(
  extra: RequestHandlerExtra<ServerRequest, ServerNotification>,
  toolName: string,
): { report: Progress; stop(): void } {
  const token = extra._meta?.progressToken;
  if (token === undefined) return { report: () => {}, stop: () => {} };
  const started = Date.now();
  let count = 0;
  const send = (message: string) => {
    count++;
    extra
      .sendNotification({
        method: 'notifications/progress',
        params: { progressToken: token, progress: count, message },
      })
      .catch(() => {}); // the client went away: the call's own answer will fail the same way
  };
  let heartbeat = setInterval(beat, HEARTBEAT_MS);
  function beat() {
    send(`${toolName}: still working (${Math.round((Date.now() - started) / 1000)} s)`);
  }
  return {
    report(message) {
      send(message);
      clearInterval(heartbeat); // the next heartbeat a whole interval after the last word
      heartbeat = setInterval(beat, HEARTBEAT_MS);
    },
    stop: () => clearInterval(heartbeat),
  };
}

/** An error as the agent should see it: `code: message`, then one line per bad field. */
function errorResult(error: unknown): CallToolResult {
  const { code, message, details } =
    error instanceof WspApiError
      ? error
      : error instanceof WspTimeoutError
        ? { code: 'timeout', message: error.message, details: undefined }
        : error instanceof Error && 'code' in error && typeof error.code === 'string'
          ? { code: error.code, message: error.message, details: (error as { details?: unknown }).details }
          : { code: 'internal', message: error instanceof Error ? error.message : String(error), details: undefined };
  let text = `${code}: ${message}`;
  if (Array.isArray(details))
    for (const d of details as Array<{ path?: unknown; message?: unknown }>)
      if (typeof d?.path === 'string' && typeof d.message === 'string') text += `\n  ${d.path}: ${d.message}`;
  return {
    isError: true,
    content: [{ type: 'text', text }],
    structuredContent: { error: { code, message, ...(details !== undefined ? { details } : {}) } },
  };
}

/**
 * Serve MCP on this process's stdin/stdout until stdin ends (the client went away) or a signal.
 * Nothing else may write to stdout: `log` goes to stderr.
 */
export async function serveMcpStdio(client: WspClient, log: (line: string) => void): Promise<void> {
  const server = createMcpServer(client);
  const transport = new StdioServerTransport();
  const ended = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
    process.stdin.once('close', () => resolve());
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await server.connect(transport);
  log(`wsp mcp: serving ${TOOLS.length} tools over stdio for ${client.baseUrl}`);
  await ended;
  await server.close();
}
