import type { Stack } from 'aws-cdk-lib';

/**
 * Physical names of the stateful resources, derived from the stage (and, for the globally unique
 * bucket name, the stack's account and region). The stateless stack references the stateful one
 * through these names instead of CloudFormation exports, so either stack can be replaced or
 * changed without export locks, and IAM resource patterns stay readable.
 */
export interface StateNames {
  table: string;
  bucket: string;
  repository: string;
}

export function stateNames(stack: Stack, stageName: string): StateNames {
  return {
    table: `wsp-${stageName}-state`,
    bucket: `wsp-${stageName}-data-${stack.account}-${stack.region}`,
    repository: `wsp-${stageName}-workspaces`,
  };
}
