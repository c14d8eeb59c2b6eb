import path from 'node:path';
import { Annotations, DockerImage } from 'aws-cdk-lib';
import { Architecture, Code, LayerVersion, Runtime, type ILayerVersion } from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { PROJECT_ROOT } from './wsp-function.js';

/** The layer's build script (also run by CI in its Debian test image: test/infra/git-layer.test.ts). */
export const GIT_LAYER_DIR = 'infra/images/git-layer';
/**
 * Context key: `false` skips building the layer in Docker (`-c wsp:dockerBundling=false`) — an offline
 * synth for review or CI, whose layer is the build script itself: not a template to deploy (warned).
 */
export const DOCKER_BUNDLING_CONTEXT = 'wsp:dockerBundling';
/** Amazon Linux 2023, the OS of the nodejs22.x runtime the functions run on. */
const BUILD_IMAGE = 'public.ecr.aws/amazonlinux/amazonlinux:2023';

/**
 * git for the worker function (the provisioner), built by `cdk deploy` itself: the build script runs
 * in Amazon Linux 2023 for arm64 (the runtime's OS and the functions' architecture) through CDK asset
 * bundling, and its output is published as a layer of the stack's own region. So `cdk deploy --all`
 * needs no hand-built layer (a prebuilt one may still be given: provisioner.gitLayerArn). Synth in
 * tests and CI skips bundling (`aws:cdk:bundling-stacks` = []), so it stays offline.
 */
export class GitLayer extends Construct {
  readonly layer: ILayerVersion;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const dir = path.join(PROJECT_ROOT, GIT_LAYER_DIR);
    const docker = this.node.tryGetContext(DOCKER_BUNDLING_CONTEXT) !== false;
    if (!docker)
      Annotations.of(this).addWarningV2(
        'wsp:git-layer-not-built',
        `${DOCKER_BUNDLING_CONTEXT}=false: the git layer is not built (offline synth); do not deploy this template`,
      );
    this.layer = new LayerVersion(this, 'Layer', {
      description: 'git for the wsp provisioner (bin/, lib/, libexec/git-core under /opt)',
      compatibleRuntimes: [Runtime.NODEJS_22_X],
      compatibleArchitectures: [Architecture.ARM_64],
      code: docker
        ? Code.fromAsset(dir, {
            bundling: {
              image: DockerImage.fromRegistry(BUILD_IMAGE),
              platform: 'linux/arm64',
              command: ['sh', '/asset-input/build.sh', '/asset-output'],
            },
          })
        : Code.fromAsset(dir),
    });
  }
}
