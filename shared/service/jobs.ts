/**
 * Long work the service hands off instead of doing inside a request. The local server runs jobs in
 * its own process (in the background); a Lambda deployment invokes a worker function with the job
 * (API Gateway caps a request at 30 s), and the worker calls `DefaultWorkspaceService.runJob`.
 * Jobs are small, serialisable, and idempotent to re-run against the state store.
 */
export type Job = { kind: 'provision'; workspaceId: string };

export interface JobDispatcher {
  /** Resolves once the job is handed off (not when it is done). */
  dispatch(job: Job): Promise<void>;
}
