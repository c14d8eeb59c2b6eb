import middy from '@middy/core';
import { z } from 'zod';
import { ConflictError } from '../../shared/contract/errors.js';
import { errorFields } from '../../shared/log.js';
import type { StateStore } from '../../shared/contract/state.js';
import { noMetrics, type ServiceMetrics } from '../../shared/service/metrics.js';
import { lambdaContainer } from './compose.js';
import { eventField, lambdaLogger, observed } from './powertools.js';
import { powertoolsLog } from './powertools-log.js';

/**
 * EventBridge "ECS Task State Change" events of the Fargate backend's cluster: log the change, and
 * when a task has STOPPED, mark the running commands of the workspace(s) whose backend
 * handle names that task (`{ kind: 'ecs', taskArn }`) as `lost` — their process died with the task,
 * so no result will ever come. The workspace's own status is left to the service (a later call
 * finds the compute gone). Events for tasks no workspace knows are ignored.
 */

const log = powertoolsLog(lambdaLogger);

const taskStateChange = z.object({
  'detail-type': z.literal('ECS Task State Change'),
  detail: z
    .object({
      taskArn: z.string().min(1),
      lastStatus: z.string(),
      desiredStatus: z.string().optional(),
      stoppedReason: z.string().optional(),
      stopCode: z.string().optional(),
    })
    .passthrough(),
});

export interface TaskEventResult {
  taskArn?: string;
  lastStatus?: string;
  workspaces: string[];
  commandsLost: number;
}

export const handler = middy<unknown, TaskEventResult>()
  // The EventBridge event's id, else the Lambda request id.
  .use(observed<unknown, TaskEventResult>((event) => eventField(event, 'id')))
  .handler(async (event) => {
    const parsed = taskStateChange.safeParse(event);
    if (!parsed.success) {
      log.warn('task-events: not an ECS Task State Change; ignored');
      return { workspaces: [], commandsLost: 0 };
    }
    const { taskArn, lastStatus, stoppedReason, stopCode } = parsed.data.detail;
    log.info('task state change', { taskArn, lastStatus, ...(stopCode ? { stopCode } : {}) });
    if (lastStatus !== 'STOPPED') return { taskArn, lastStatus, workspaces: [], commandsLost: 0 };
    const { deps } = await lambdaContainer();
    return { taskArn, lastStatus, ...(await markCommandsLost(deps.state, taskArn, stoppedReason, deps.metrics)) };
  });

/** Every running command of the workspaces on `taskArn` → lost. A command settled meanwhile by someone else is left alone. */
export async function markCommandsLost(
  state: StateStore,
  taskArn: string,
  stoppedReason: string | undefined,
  metrics: ServiceMetrics = noMetrics,
): Promise<{ workspaces: string[]; commandsLost: number }> {
  const workspaces = (await state.listWorkspaces()).filter(
    (w) => w.backend?.kind === 'ecs' && w.backend['taskArn'] === taskArn,
  );
  const reason = `workspace task stopped${stoppedReason ? `: ${stoppedReason.slice(0, 200)}` : ''}`;
  let commandsLost = 0;
  for (const ws of workspaces) {
    for (const command of await state.listCommands(ws.id)) {
      if (command.state !== 'running') continue;
      try {
        await state.updateCommand(ws.id, command.id, command.version, {
          state: 'lost',
          reason,
          endedAt: new Date().toISOString(),
        });
        commandsLost++;
        if (!command.internal) metrics.count('commandsFinished', 'lost');
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        log.info('command settled by another writer first', {
          workspaceId: ws.id,
          commandId: command.id,
          ...errorFields(error),
        });
      }
    }
  }
  return { workspaces: workspaces.map((w) => w.id), commandsLost };
}
