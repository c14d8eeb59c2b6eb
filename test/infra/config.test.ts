import { describe, expect, it } from 'vitest';
import { EPHEMERAL_STORAGE_GIB, STAGE_NAMES, stageConfig, WARM_POOL_MAX_SIZE } from '../../infra/config.js';
import { BadRequestError } from '../../shared/contract/errors.js';

describe('stageConfig', () => {
  it('is pure: the same input gives an equal, independent object', () => {
    const a = stageConfig('dev');
    const b = stageConfig('dev');
    expect(a).toEqual(b);
    a.workspace.cpu = 1;
    a.gitSecrets.push('x');
    expect(stageConfig('dev').workspace.cpu).toBe(1024);
    expect(stageConfig('dev').gitSecrets).toEqual([]);
  });

  it('knows dev and prod, which differ where they should', () => {
    expect([...STAGE_NAMES]).toEqual(['dev', 'prod']);
    const dev = stageConfig('dev');
    const prod = stageConfig('prod');
    expect(prod.name).toBe('prod');
    expect(prod.logRetentionDays).toBeGreaterThan(dev.logRetentionDays);
    expect(prod.vpc).toEqual({ kind: 'create', maxAzs: 3, natGateways: 2 });
    expect(dev.api.auth).toBe('iam');
  });

  it('rejects an unknown stage with a BadRequestError naming the known ones', () => {
    expect(() => stageConfig('staging')).toThrow(BadRequestError);
    expect(() => stageConfig('staging')).toThrow(/dev, prod/);
  });

  it('applies overrides: secrets (deduplicated), VPC id, auth mode, provider config', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:git-AbCdEf';
    const c = stageConfig('dev', {
      gitSecrets: ['wsp/git/a', arn, 'wsp/git/a'],
      vpcId: 'vpc-0abc1234',
      apiAuth: 'bearer',
      provider: { setup: { script: 'true' } },
    });
    expect(c.gitSecrets).toEqual(['wsp/git/a', arn]);
    expect(c.vpc).toEqual({ kind: 'import', vpcId: 'vpc-0abc1234' });
    expect(c.api.auth).toBe('bearer');
    expect(c.provider).toEqual({ setup: { script: 'true' } });
  });

  it('rejects malformed overrides', () => {
    expect(() => stageConfig('dev', { gitSecrets: ['has space'] })).toThrow(/not a secret name or ARN/);
    expect(() => stageConfig('dev', { gitSecrets: ['arn:aws:s3:::bucket'] })).toThrow(/not a secret name or ARN/);
    expect(() => stageConfig('dev', { vpcId: 'my-vpc' })).toThrow(/not a VPC id/);
    expect(() => stageConfig('dev', { apiAuth: 'none' as never })).toThrow(/'iam' or 'bearer'/);
  });

  it('adds every secret the provider config refers to (the provisioner must be able to read it)', () => {
    const provider = {
      repositories: [
        { url: 'https://example.com/a.git', path: 'a', credential: 'secretsmanager:wsp/git/a#token' },
        { url: 'https://example.com/b.git', path: 'b', credential: 'env:GIT_TOKEN' },
        { url: 'https://example.com/c.git', path: 'c', credential: 'secretsmanager:wsp/git/a' },
      ],
    };
    expect(stageConfig('dev', { provider }).gitSecrets).toEqual(['wsp/git/a']);
    expect(stageConfig('dev', { provider, gitSecrets: ['wsp/git/b'] }).gitSecrets).toEqual(['wsp/git/b', 'wsp/git/a']);
  });

  it("collects webhook signing secrets apart from git secrets: the config hooks' secretsmanager: ones and the override", () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:wsp/hooks/b-AbCdEf';
    const provider = {
      repositories: [{ url: 'https://example.com/a.git', path: 'a', credential: 'secretsmanager:wsp/git/a' }],
      webhooks: [
        { url: 'https://hooks.example.com/a', secret: 'secretsmanager:wsp/hooks/a#key' },
        { url: 'https://hooks.example.com/b', secret: `secretsmanager:${arn}` },
        { url: 'https://hooks.example.com/c', secret: 'env:HOOK_SECRET' },
      ],
    };
    const c = stageConfig('dev', { provider, webhookSecrets: ['wsp/hooks/extra', 'wsp/hooks/a'] });
    expect(c.webhookSecrets).toEqual(['wsp/hooks/extra', 'wsp/hooks/a', arn]);
    expect(c.gitSecrets).toEqual(['wsp/git/a']);
    expect(stageConfig('dev').webhookSecrets).toEqual([]);
    expect(() => stageConfig('dev', { webhookSecrets: ['arn:aws:s3:::bucket'] })).toThrow(
      /webhook secret reference .* is not a secret name or ARN/,
    );
  });

  it("validates the provider config with the provider's own schema", () => {
    expect(() =>
      stageConfig('dev', { provider: { repositories: [{ url: 'https://example.com/r.git', path: '../escape' }] } }),
    ).toThrow(/repositories\[0\]\.path/);
    expect(() => stageConfig('dev', { provider: { mode: 'kubernetes' } })).toThrow(BadRequestError);
  });

  it('Fargate defaults: no warm pool, no git layer, one-day transfer and layer expiry', () => {
    for (const name of STAGE_NAMES) {
      const c = stageConfig(name);
      expect(c.warmPool).toEqual({ size: 0 });
      expect(c.provisioner.gitLayerArn).toBeUndefined();
      expect(c.bucket.transferExpiryDays).toBe(1);
      expect(c.bucket.layerExpiryDays).toBe(1);
      expect(c.workspace.ephemeralStorageGiB).toBeGreaterThanOrEqual(EPHEMERAL_STORAGE_GIB.min);
    }
  });

  it('warm pool size: an integer 0–20', () => {
    expect(stageConfig('dev', { warmPoolSize: 0 }).warmPool.size).toBe(0);
    expect(stageConfig('dev', { warmPoolSize: WARM_POOL_MAX_SIZE }).warmPool.size).toBe(20);
    for (const bad of [-1, 21, 1.5, Number.NaN]) {
      expect(() => stageConfig('dev', { warmPoolSize: bad }), String(bad)).toThrow(BadRequestError);
      expect(() => stageConfig('dev', { warmPoolSize: bad }), String(bad)).toThrow(
        /warmPool\.size must be an integer 0–20/,
      );
    }
  });

  it('workspace ephemeral storage: an integer 21–200 GiB', () => {
    expect(stageConfig('dev', { ephemeralStorageGiB: 21 }).workspace.ephemeralStorageGiB).toBe(21);
    expect(stageConfig('prod', { ephemeralStorageGiB: 200 }).workspace.ephemeralStorageGiB).toBe(200);
    for (const bad of [20, 201, 30.5, Number.NaN]) {
      expect(() => stageConfig('dev', { ephemeralStorageGiB: bad }), String(bad)).toThrow(
        /ephemeralStorageGiB must be an integer 21–200/,
      );
    }
  });

  it('git layer: a Lambda layer *version* ARN, nothing else', () => {
    for (const good of [
      'arn:aws:lambda:eu-west-1:111111111111:layer:wsp-git:1',
      'arn:aws:lambda:us-gov-west-1:111111111111:layer:git_2-45:12',
      'arn:aws-cn:lambda:cn-north-1:111111111111:layer:git:3',
    ]) {
      expect(stageConfig('dev', { gitLayerArn: good }).provisioner.gitLayerArn).toBe(good);
    }
    for (const bad of [
      'arn:aws:lambda:eu-west-1:111111111111:layer:wsp-git', // the layer, not a version
      'arn:aws:lambda:eu-west-1:111111111111:layer:wsp-git:0',
      'arn:aws:lambda:eu-west-1:111111111111:function:wsp-git:1',
      'arn:aws:lambda:eu-west-1:1111:layer:wsp-git:1',
      'wsp-git:1',
      '',
    ]) {
      expect(() => stageConfig('dev', { gitLayerArn: bad }), bad).toThrow(/not a Lambda layer version ARN/);
    }
  });
});
