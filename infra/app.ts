import { App } from 'aws-cdk-lib';

/**
 * The CDK app. The stateful and stateless stacks of the AWS path arrive with that issue; until then
 * the app synthesises to an empty assembly, so `npx cdk synth` already works offline.
 */
const app = new App();
app.synth();
