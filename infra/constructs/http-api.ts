import { CfnOutput, Duration, RemovalPolicy } from 'aws-cdk-lib';
import {
  HttpApi,
  HttpMethod,
  HttpStage,
  LogGroupLogDestination,
  type IHttpRouteAuthorizer,
} from 'aws-cdk-lib/aws-apigatewayv2';
import {
  HttpIamAuthorizer,
  HttpLambdaAuthorizer,
  HttpLambdaResponseType,
} from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { routes } from '../../shared/api/routes.js';
import type { StageConfig } from '../config.js';
import type { WspFunction } from './wsp-function.js';

export interface WspHttpApiProps {
  stage: StageConfig;
  /** Serves every route (API Gateway HTTP API payload v2). */
  handler: WspFunction;
  /** Required when `stage.api.auth` is `bearer`. */
  authorizer?: WspFunction;
  logRetention: RetentionDays;
}

/**
 * The HTTP API: one route per entry of the shared route table (the same table the local server
 * serves), each with the stage's authorizer — IAM (SigV4) or the Lambda authorizer. There is no
 * `$default` route, so a path outside the table never reaches a function. Access logs and
 * throttling are on the `$default` stage.
 */
export class WspHttpApi extends Construct {
  readonly api: HttpApi;
  readonly stage: HttpStage;

  constructor(scope: Construct, id: string, props: WspHttpApiProps) {
    super(scope, id);
    const { stage } = props;
    this.api = new HttpApi(this, 'Api', {
      apiName: `wsp-${stage.name}`,
      description: `Workspace Provider (${stage.name})`,
      createDefaultStage: false,
    });
    const accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stage = new HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: stage.api.throttleRatePerSecond, burstLimit: stage.api.throttleBurst },
      accessLogSettings: { destination: new LogGroupLogDestination(accessLogs) },
    });

    const authorizer = this.authorizer(props);
    const integration = new HttpLambdaIntegration('Handler', props.handler);
    for (const route of routes) {
      this.api.addRoutes({ path: route.path, methods: [HttpMethod[route.method]], integration, authorizer });
    }
    new CfnOutput(this, 'Url', {
      value: this.api.apiEndpoint,
      description: `Workspace Provider API (${stage.api.auth} auth)`,
    });
  }

  private authorizer(props: WspHttpApiProps): IHttpRouteAuthorizer {
    if (props.stage.api.auth === 'iam') return new HttpIamAuthorizer();
    if (!props.authorizer) throw new Error('bearer auth needs the authorizer function');
    return new HttpLambdaAuthorizer('BearerKey', props.authorizer, {
      responseTypes: [HttpLambdaResponseType.SIMPLE],
      identitySource: ['$request.header.Authorization'],
      // Cached per Authorization header value; a revoked key stops working within this time.
      resultsCacheTtl: Duration.minutes(5),
    });
  }
}
