import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WspError } from '../../shared/contract/errors.js';
import { loadConfig } from '../../shared/config/load.js';
import { createLogger, errorFields } from '../../shared/log.js';
import { startHttpServer } from './http-server.js';
import { composeProvider, type Provider } from './provider.js';

export interface RunningProvider {
  url: string;
  provider: Provider;
  close(): Promise<void>;
}

/**
 * `npm start` / `wsp serve`: load the config (flags > env > file > defaults), compose the provider,
 * serve the API. The token is never printed: it is in <dataDir>/auth-token (0600), where the CLI reads it.
 */
export async function startProvider(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<RunningProvider> {
  const loaded = loadConfig(argv, env);
  const log = createLogger({ svc: 'wsp' });
  const provider = await composeProvider(loaded, log);
  const { config } = loaded;
  const server = await startHttpServer({
    service: provider.service,
    host: config.listen.host,
    port: config.listen.port,
    maxBodyBytes: config.listen.maxBodyBytes,
    maxRawBodyBytes: config.files.maxBytes,
    ...(provider.authToken !== undefined ? { authToken: provider.authToken } : {}),
    metrics: provider.scrapeMetrics,
    log: log.child({ part: 'http' }),
  });
  log.info('workspace provider listening', {
    url: server.url,
    mode: config.mode,
    dataDir: config.dataDir,
    repositories: config.repositories.length,
    auth: provider.authToken ? `bearer token in ${path.join(config.dataDir, 'auth-token')}` : 'disabled',
    instance: provider.deps.instanceId,
    config: loaded.sources,
  });
  return {
    url: server.url,
    provider,
    async close() {
      await server.close();
      await provider.close();
    },
  };
}

async function main(): Promise<void> {
  try {
    const running = await startProvider(process.argv.slice(2));
    process.stdout.write(`wsp: serving on ${running.url}\n`);
    const stop = (): void => {
      running.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  } catch (error) {
    const message = error instanceof WspError ? error.message : 'failed to start';
    process.stderr.write(`wsp: ${message}\n`);
    if (!(error instanceof WspError)) process.stderr.write(`${JSON.stringify(errorFields(error))}\n`);
    process.exit(error instanceof WspError && error.code === 'bad_request' ? 2 : 1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) void main();
