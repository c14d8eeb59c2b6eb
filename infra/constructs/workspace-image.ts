import { IgnoreMode } from 'aws-cdk-lib';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { Construct } from 'constructs';
import type { StageConfig } from '../config.js';
import { PROJECT_ROOT } from './wsp-function.js';

/** The Dockerfile of the workspace image, relative to the project root (the build context). */
export const WORKSPACE_DOCKERFILE = 'infra/images/workspace/Dockerfile';
/** What the image carries of this checkout: the runner and its pristine-copy helper. */
export const WORKSPACE_IMAGE_FILES = ['shared/backends/runner/runner.sh', 'shared/backends/runner/pristine.sh'];

/**
 * The workspace base image as a CDK image asset: `cdk deploy` builds it from this checkout and
 * pushes it to the bootstrap asset repository (tagged by the hash of exactly the files below), so the
 * runner in every task is the provider's own and `cdk deploy --all` is the whole deployment. The
 * build context is the project root reduced to the Dockerfile and the runner scripts (docker-style
 * ignore rules), so the image — and its asset hash — change only when they do. Synth does not build
 * it (offline CI synth works); CI builds the same Dockerfile with its local engine
 * (test/infra/workspace-image.test.ts).
 */
export class WorkspaceImage extends Construct {
  readonly asset: DockerImageAsset;

  constructor(scope: Construct, id: string, props: { stage: StageConfig }) {
    super(scope, id);
    this.asset = new DockerImageAsset(this, 'Asset', {
      directory: PROJECT_ROOT,
      file: WORKSPACE_DOCKERFILE,
      platform: props.stage.workspace.architecture === 'ARM64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      ignoreMode: IgnoreMode.DOCKER,
      exclude: ['*', ...[WORKSPACE_DOCKERFILE, ...WORKSPACE_IMAGE_FILES].map((f) => `!${f}`)],
      displayName: `wsp-${props.stage.name}-workspace-image`,
    });
  }
}
