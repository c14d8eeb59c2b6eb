import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_WORKSPACE_PIDS } from '../contract/limits.js';
import { WEBHOOK_EVENT_TYPES } from '../contract/webhooks.js';

/**
 * Provider configuration schema: the file, flags and env are merged (shared/config/load.ts) and then
 * validated here once. Units are in the names (…Ms, …Seconds, …Mb, …Bytes).
 */

/** A relative path inside the workspace root: no absolute paths, no '..' segments. */
export const relativePath = z
  .string()
  .min(1)
  .max(512)
  .refine((p) => !path.posix.isAbsolute(p) && !p.includes('\0'), 'must be a relative path')
  .refine((p) => !p.split(/[\\/]+/).includes('..'), "must not contain '..'");

const credentialReference = z
  .string()
  .regex(
    /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+|secretsmanager:[^#\s]+(#[^\s]+)?)$/,
    'must be a reference: env:NAME, file:/abs/path or secretsmanager:<name-or-arn>[#jsonKey]',
  );

/** Git remote URL. Credentials in the URL are refused: they belong in `credential`. */
const gitUrl = z
  .string()
  .min(1)
  .max(2048)
  .refine(
    (u) => /^(https?|file|ssh|git):\/\//.test(u) || /^[\w.-]+@[\w.-]+:/.test(u),
    'must be an http(s), file, ssh or git URL',
  )
  .refine((u) => !/^[a-z]+:\/\/[^/@]*:[^/@]*@/i.test(u), 'must not embed credentials; use `credential`');

export const gitRef = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9._/@{}^~-]+$/, 'is not a valid git ref')
  .refine((r) => !r.startsWith('-') && !r.includes('..'), 'is not a valid git ref');

const repositorySchema = z
  .object({
    url: gitUrl.optional(),
    /** A host directory copied whole (working tree, uncommitted changes and `.git`). */
    localPath: z.string().min(1).optional(),
    path: relativePath.or(z.literal('.')),
    ref: gitRef.optional(),
    credential: credentialReference.optional(),
    /** Paths inside this repository whose contents join the cache key (lockfiles). */
    cacheKeyFiles: z.array(relativePath).default([]),
  })
  .strict()
  .refine((r) => (r.url === undefined) !== (r.localPath === undefined), {
    message: 'exactly one of url or localPath is required',
  })
  .refine((r) => r.localPath === undefined || r.credential === undefined, {
    message: 'credential applies to url repositories only',
    path: ['credential'],
  });

/**
 * Where a webhook is POSTed: http(s) only, no credentials in it (a receiver authenticates deliveries by
 * their signature). Plain http is allowed for receivers on the same host or network.
 */
export const webhookUrl = z
  .string()
  .max(2048)
  .refine((u) => {
    try {
      const url = new URL(u);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL without credentials');

/** Which lifecycle events a hook gets (shared/contract/webhooks.ts); default: all of them. */
export const webhookEvents = z
  .array(z.enum(WEBHOOK_EVENT_TYPES))
  .min(1)
  .max(WEBHOOK_EVENT_TYPES.length)
  .refine((events) => new Set(events).size === events.length, 'must not repeat an event')
  .default([...WEBHOOK_EVENT_TYPES]);

const configWebhook = z
  .object({
    url: webhookUrl,
    events: webhookEvents,
    /** The signing key, as a reference (env:, file:, secretsmanager:) like a git credential: never a value here. */
    secret: credentialReference,
  })
  .strict();

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is not a valid environment variable name');
export const envMap = z.record(envName, z.string().max(32_768));

/** Canonical form of a repository path: 'a/b', or '.' for the workspace root. Also its name. */
export function normalizeRepoPath(p: string): string {
  const n = path.posix.normalize(p).replace(/\/+$/, '');
  return n === '' ? '.' : n;
}

/**
 * What a workspace's processes may reach: `none` (loopback of their own only), `egress` (the
 * internet, never the host's loopback: slirp4netns with host loopback disabled on the local
 * backend, a Docker bridge on Docker), `host` (the host's own network namespace, its loopback
 * services included: an explicit opt-in, warned on every workspace). `bridge` is the old name of
 * `egress` and still accepted.
 */
const networkPolicy = z
  .enum(['none', 'egress', 'host', 'bridge'])
  .transform((v): 'none' | 'egress' | 'host' => (v === 'bridge' ? 'egress' : v));

export const configSchema = z
  .object({
    mode: z.enum(['local', 'docker', 'ecs']).default('local'),
    /** Provider data: state, mirrors, cache, workspaces. Never visible inside a workspace. */
    dataDir: z.string().min(1).default('.wsp'),
    listen: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(7070),
        /**
         * Largest request body accepted by the local server (413 beyond). Command stdin may be up to 8 MiB
         * (base64 ~11 MiB). The Lambda API takes at most 2.5 MiB whatever this says (6 MB payloads).
         */
        maxBodyBytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(12 * 1024 * 1024),
        /** Open event streams (SSE) in total and per workspace; 429 beyond (each stream polls while open). */
        maxEventStreams: z.number().int().min(1).max(100_000).default(256),
        maxEventStreamsPerWorkspace: z.number().int().min(1).max(10_000).default(16),
      })
      .strict()
      .prefault({}),
    repositories: z.array(repositorySchema).max(64).default([]),
    setup: z
      .object({
        script: z.string().max(1_000_000).default(''),
        timeoutMs: z
          .number()
          .int()
          .positive()
          .default(30 * 60_000),
        /** Network of the setup script (`npm install` needs the internet; never the host's loopback). */
        network: networkPolicy.default('egress'),
      })
      .strict()
      .prefault({}),
    workspace: z
      .object({
        home: z.string().startsWith('/').default('/home/node'),
        guestPath: z.string().startsWith('/').default('/home/node/workspace'),
        user: z
          .object({
            name: z
              .string()
              .regex(/^[a-z_][a-z0-9_-]*$/)
              .default('node'),
            uid: z
              .number()
              .int()
              .min(1)
              .max(2 ** 31 - 1)
              .default(1000),
            gid: z
              .number()
              .int()
              .min(1)
              .max(2 ** 31 - 1)
              .default(1000),
          })
          .strict()
          .prefault({}),
        env: envMap.default({}),
        resources: z
          .object({
            cpus: z.number().positive().max(256).optional(),
            memoryMb: z.number().int().min(16).optional(),
            // A default, unlike cpus and memory: without one a fork bomb takes the host (see limits.ts).
            pids: z.number().int().min(8).default(DEFAULT_WORKSPACE_PIDS),
            /**
             * Disk the workspace's writable content may use (home and /tmp). Measured by the janitor;
             * beyond it the workspace's processes are killed and commands refused until a reset.
             */
            diskMb: z
              .number()
              .int()
              .min(1)
              .default(20 * 1024),
          })
          .strict()
          .prefault({}),
        /** Network of the agent's commands (and every provider step but setup): none unless asked. */
        network: networkPolicy.default('none'),
        ttlSeconds: z
          .number()
          .int()
          .positive()
          .default(24 * 3600),
        idleTimeoutSeconds: z.number().int().positive().default(3600),
      })
      .strict()
      .prefault({}),
    state: z
      .object({
        /** DynamoDB endpoint (LocalStack, DynamoDB Local). Unset + embedded → dynalite under dataDir. */
        endpoint: z.string().url().optional(),
        embedded: z.boolean().default(true),
        region: z.string().min(1).default('us-east-1'),
        tableName: z
          .string()
          .regex(/^[A-Za-z0-9_.-]{3,255}$/)
          .default('wsp'),
      })
      .strict()
      .prefault({}),
    cache: z
      .object({
        enabled: z.boolean().default(true),
        /**
         * Restore keys: a miss caused only by a changed cacheKeyFiles file (a lockfile bump) starts from
         * the most recent ready entry of the same repositories and setup script and re-runs setup on top.
         */
        restore: z.boolean().default(true),
        maxEntries: z.number().int().min(0).default(20),
        maxBytes: z
          .number()
          .int()
          .min(0)
          .default(20 * 1024 ** 3),
        maxAgeSeconds: z
          .number()
          .int()
          .positive()
          .default(7 * 24 * 3600),
      })
      .strict()
      .prefault({}),
    commands: z
      .object({
        defaultTimeoutMs: z
          .number()
          .int()
          .min(0)
          .default(10 * 60_000),
        maxOutputBytes: z
          .number()
          .int()
          .min(1024)
          .default(8 * 1024 * 1024),
        defaultWaitMs: z.number().int().min(0).max(25_000).default(10_000),
      })
      .strict()
      .prefault({}),
    /**
     * The Files API (GET/PUT/DELETE /workspaces/{id}/files…). Each operation runs inside the workspace as
     * its user, like a command. `maxBytes` caps an upload and a download alike (413 beyond; a bigger file
     * is read in ranges); the local server accepts upload bodies up to it whatever listen.maxBodyBytes says,
     * the Lambda API at most 2.5 MiB. A download is held in memory while it is sent.
     */
    files: z
      .object({
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024 * 1024)
          .default(64 * 1024 * 1024),
        /** Entries one list answers with at most (`truncated` says there were more). */
        maxListEntries: z.number().int().min(1).max(1_000_000).default(10_000),
        /** One file operation inside the workspace is killed after this (a FIFO, a hung filesystem): 502. */
        timeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
      })
      .strict()
      .prefault({}),
    /**
     * Long operations (git fetch, reset): how long their request waits for the end before it answers
     * 202 with the operation to poll. A request's own `waitMs` may ask for less. The Lambda entry point
     * caps it below API Gateway's 30 s whatever is configured here.
     */
    operations: z
      .object({
        maxWaitMs: z
          .number()
          .int()
          .min(0)
          .max(60 * 60_000)
          .default(10 * 60_000),
      })
      .strict()
      .prefault({}),
    /**
     * Fork and snapshots (POST /workspaces/{id}/fork, …/snapshots): `maxCount` caps the copies one fork
     * makes (a count above it is a 400). Each copy is a workspace with the source's plan and limits.
     */
    fork: z
      .object({
        maxCount: z.number().int().min(1).max(256).default(16),
      })
      .strict()
      .prefault({}),
    /** Persistent shell sessions (POST /workspaces/{id}/sessions): at most this many live ones per workspace (409 beyond). */
    sessions: z
      .object({
        maxPerWorkspace: z.number().int().min(1).max(256).default(8),
      })
      .strict()
      .prefault({}),
    /**
     * Lifecycle webhooks every workspace's events go to (a workspace may add its own at create):
     * signed, retried with backoff, at least once (docs/webhooks.md).
     */
    webhooks: z.array(configWebhook).max(16).default([]),
    /** How webhook events are delivered: attempts, backoff, the timeout of one attempt, when `workspace.expiring` fires. */
    webhookDelivery: z
      .object({
        /** Attempts per delivery before it is marked failed (the first included). */
        maxAttempts: z.number().int().min(1).max(30).default(15),
        /** Wait before the second attempt; doubled after each failure (with jitter), up to retryMaxMs. */
        retryBaseMs: z.number().int().min(10).max(3_600_000).default(2_000),
        retryMaxMs: z
          .number()
          .int()
          .min(10)
          .max(86_400_000)
          .default(10 * 60_000),
        /** One attempt: connect, send and the receiver's answer (a 2xx) within this. */
        timeoutMs: z.number().int().min(100).max(60_000).default(10_000),
        /**
         * A hook given per workspace (its URL comes from an API caller) may be plain http / may reach
         * loopback, private, link-local or reserved addresses: off by default (SSRF; webhooks/targets.ts).
         * The configured hooks are the operator's and never restricted.
         */
        allowHttp: z.boolean().default(false),
        allowPrivateAddresses: z.boolean().default(false),
        /** `workspace.expiring` fires this long before the TTL or idle timeout tears a workspace down. */
        expiringBeforeSeconds: z
          .number()
          .int()
          .min(60)
          .max(7 * 24 * 3600)
          .default(300),
      })
      .strict()
      .prefault({}),
    /** mode 'docker': the daemon and the image fresh workspaces start from (never pulled). */
    docker: z
      .object({
        /** Unix socket of the Docker daemon. Unset → $WSP_DOCKER_SOCKET, a unix:// $DOCKER_HOST, else /var/run/docker.sock. */
        socketPath: z.string().startsWith('/').optional(),
        /** Local image of fresh workspaces, never pulled (.ci/docker.sh builds wsp-base:bookworm). */
        baseImage: z
          .string()
          .min(1)
          .max(256)
          .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, 'is not a valid image reference')
          .default('wsp-base:bookworm'),
      })
      .strict()
      .prefault({}),
    /**
     * mode 'ecs' (Fargate): where workspaces run. The CDK stack sets all of it from its resources
     * (WSP_ECS_* environment of the handlers, functions/lambda/settings.ts); a server in mode ecs
     * needs it in its config. Required fields are checked when the backend is built.
     */
    ecs: z
      .object({
        /** AWS region; unset → the SDK's (AWS_REGION). */
        region: z
          .string()
          .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'is not an AWS region')
          .optional(),
        cluster: z
          .string()
          .regex(/^[A-Za-z0-9_:/.-]{1,255}$/, 'is not a cluster name or ARN')
          .optional(),
        /** Task definition of fresh workspaces (family[:revision] or ARN); cache images get revisions of its family. */
        taskDefinition: z
          .string()
          .regex(/^[A-Za-z0-9_:/.-]{1,512}$/, 'is not a task definition family or ARN')
          .optional(),
        container: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,255}$/)
          .default('workspace'),
        /** Private subnets; tasks never get a public IP. */
        subnets: z
          .array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'is not a subnet id'))
          .max(16)
          .default([]),
        securityGroups: z
          .array(z.string().regex(/^sg-[0-9a-f]{8,17}$/, 'is not a security group id'))
          .max(5)
          .default([]),
        /** Data bucket (transfer/ and layers/ prefixes). */
        bucket: z
          .string()
          .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'is not an S3 bucket name')
          .optional(),
        /** `<registry host>/<repository>`: base image and cache images (ECR: `<acct>.dkr.ecr.<region>.amazonaws.com/<repo>`). */
        repositoryUri: z
          .string()
          .regex(/^[A-Za-z0-9.-]+(:\d+)?\/[a-z0-9][a-z0-9._/-]*$/, 'is not <registry host>/<repository>')
          .optional(),
        /**
         * The base image as `<registry host>/<repository>:<tag>` (or `@sha256:…`), when it is not a tag
         * of `repositoryUri` — the CDK stack builds it as an image asset (WSP_ECS_BASE_IMAGE). Same
         * registry host as repositoryUri. Wins over baseImageTag.
         */
        baseImage: z
          .string()
          .regex(
            /^[A-Za-z0-9.-]+(:\d+)?\/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$/,
            'is not <registry host>/<repository>:<tag> or @sha256:<digest>',
          )
          .optional(),
        baseImageTag: z
          .string()
          .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/)
          .default('base'),
        /** Tasks kept started per cache image (0: none); a setup then claims one instead of waiting for a pull. */
        warmPoolSize: z.number().int().min(0).max(20).default(0),
        /** How long a new task may take to be exec-ready (image pull included). */
        readyTimeoutSeconds: z.number().int().min(30).max(3600).default(600),
        /** Part size, MiB, of a cache layer's multipart upload from the task (S3: 5 MiB..5 GiB a part, 10,000 parts). */
        layerPartMb: z.number().int().min(5).max(5120).default(64),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** Bearer token. Unset → generated at first start, kept 0600 in dataDir/auth-token. */
        token: z.string().min(16).optional(),
        disabled: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .refine((c) => isInside(c.workspace.home, c.workspace.guestPath), {
    message: 'workspace.guestPath must be inside workspace.home',
    path: ['workspace', 'guestPath'],
  })
  .refine((c) => new Set(c.repositories.map((r) => normalizeRepoPath(r.path))).size === c.repositories.length, {
    message: 'repository paths must be unique',
    path: ['repositories'],
  });

function isInside(parent: string, child: string): boolean {
  const rel = path.posix.relative(path.posix.normalize(parent), path.posix.normalize(child));
  return rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel));
}

export type ProviderConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
