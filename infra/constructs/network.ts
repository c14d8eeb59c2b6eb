import { RemovalPolicy } from 'aws-cdk-lib';
import { FlowLogDestination, GatewayVpcEndpointAwsService, SubnetType, Vpc, type IVpc } from 'aws-cdk-lib/aws-ec2';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { VpcConfig } from '../config.js';

/**
 * The workspaces' VPC. `create`: public subnets hold only NAT gateways, workspaces get private
 * subnets (no public IP is possible there), flow logs go to CloudWatch, S3 and DynamoDB are reached
 * through free gateway endpoints. `import`: an existing VPC by id via a context lookup — its
 * private subnets must have egress (NAT) and the lookup must be in cdk.context.json to synth offline.
 */
export function workspaceVpc(scope: Construct, config: VpcConfig, logRetention: RetentionDays): IVpc {
  if (config.kind === 'import') return Vpc.fromLookup(scope, 'Vpc', { vpcId: config.vpcId });
  const vpc = new Vpc(scope, 'Vpc', {
    maxAzs: config.maxAzs,
    natGateways: config.natGateways,
    subnetConfiguration: [
      { name: 'nat', subnetType: SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
      { name: 'workspaces', subnetType: SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
    ],
    gatewayEndpoints: {
      S3: { service: GatewayVpcEndpointAwsService.S3 },
      DynamoDB: { service: GatewayVpcEndpointAwsService.DYNAMODB },
    },
  });
  const flowLogs = new LogGroup(scope, 'VpcFlowLogs', {
    retention: logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  vpc.addFlowLog('FlowLog', { destination: FlowLogDestination.toCloudWatchLogs(flowLogs) });
  return vpc;
}
