import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Secrets Manager's GetSecretValue on 127.0.0.1 (the JSON 1.1 protocol the SDK speaks), for code that
 * reads a `secretsmanager:` reference through the real SDK client (point AWS_ENDPOINT_URL_SECRETS_MANAGER
 * here). Secrets are keyed by ARN or name; every SecretId asked for is recorded, and a request without a
 * SigV4 Authorization header is refused as AWS would.
 */
export class FakeSecretsManager {
  /** The SecretId of every GetSecretValue, in order. */
  readonly requested: string[] = [];
  private server: http.Server | undefined;

  constructor(private readonly secrets: Record<string, string>) {}

  async start(): Promise<string> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('content-type', 'application/x-amz-json-1.1');
        const fail = (status: number, type: string, message: string) => {
          res.statusCode = status;
          res.end(JSON.stringify({ __type: type, message }));
        };
        if (!String(req.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256 '))
          return fail(400, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
        if (req.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue')
          return fail(400, 'InvalidAction', 'only GetSecretValue here');
        const { SecretId } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { SecretId: string };
        this.requested.push(SecretId);
        const value = this.secrets[SecretId];
        if (value === undefined)
          return fail(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
        res.end(
          JSON.stringify({
            ARN: SecretId.startsWith('arn:')
              ? SecretId
              : `arn:aws:secretsmanager:eu-west-1:111111111111:secret:${SecretId}`,
            Name: SecretId,
            SecretString: value,
            VersionId: 'v1',
            VersionStages: ['AWSCURRENT'],
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
