import { SecretsManagerClient, type SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';

export interface SecretsManagerClientOptions {
  region: string;
  /** Endpoint override (LocalStack). Unset → AWS, or AWS_ENDPOINT_URL_SECRETS_MANAGER if set. */
  endpoint?: string;
}

/** One client per process; pass it to SecretsManagerSecretSource. The SDK's credential chain applies. */
export function createSecretsManagerClient(options: SecretsManagerClientOptions): SecretsManagerClient {
  const config: SecretsManagerClientConfig = { region: options.region };
  if (options.endpoint !== undefined) config.endpoint = options.endpoint;
  return new SecretsManagerClient(config);
}
