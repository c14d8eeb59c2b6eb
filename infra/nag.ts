import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Acknowledging cdk-nag findings precisely: an IAM5 finding names the wildcard resource as cdk-nag
 * flattens it (`<Logical.Arn>`, `<AWS::Region>`, literals joined). These helpers compute that same
 * string from the token we granted on, so each acknowledgement applies to exactly one resource
 * pattern (the v3 form of `appliesTo`) and stays right when logical ids or the environment change.
 */

/** cdk-nag's flattenCfnReference (utils/flatten-cfn-reference.ts, Apache-2.0), same output. */
function flattenForNag(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/}/g, '>');
  if (typeof node === 'object' && node !== null) {
    const o = node as Record<string, unknown>;
    if (o['Fn::Join']) {
      const [delimiter, items] = o['Fn::Join'] as [string, unknown[]];
      return items.map(flattenForNag).join(delimiter);
    }
    if (o['Fn::Sub']) return flattenForNag(o['Fn::Sub']);
    if (o['Fn::GetAtt']) {
      const [resource, attribute] = o['Fn::GetAtt'] as [unknown, unknown];
      return `<${flattenForNag(resource)}.${flattenForNag(attribute)}>`;
    }
    if (o['Fn::ImportValue']) return flattenForNag(o['Fn::ImportValue']);
    if (o['Ref']) return `<${flattenForNag(o['Ref'])}>`;
  }
  return JSON.stringify(node);
}

/** The IAM5 finding id for a wildcard `resource` (a token or string) granted to `principal`. */
function wildcardResourceFinding(principal: IConstruct, resource: string): string {
  return `AwsSolutions-IAM5[Resource::${flattenForNag(Stack.of(principal).resolve(resource))}]`;
}

/** Acknowledge the IAM5 finding for one wildcard resource pattern on `principal`, with a reason. */
export function acknowledgeWildcardResource(principal: IConstruct, resource: string, reason: string): void {
  Validations.of(principal).acknowledge({ id: wildcardResourceFinding(principal, resource), reason });
}
