import { BadRequestError } from '../contract/errors.js';

/**
 * Builds UpdateItem/condition expressions with placeholders for every name and value (many of
 * our attribute names, e.g. `status`, are DynamoDB reserved words).
 */
export class ExpressionBuilder {
  readonly names: Record<string, string> = {};
  readonly values: Record<string, unknown> = {};
  private nameIds = new Map<string, string>();
  private valueCount = 0;

  name(attribute: string): string {
    let id = this.nameIds.get(attribute);
    if (id === undefined) {
      id = `#n${this.nameIds.size}`;
      this.nameIds.set(attribute, id);
      this.names[id] = attribute;
    }
    return id;
  }

  value(v: unknown): string {
    const id = `:v${this.valueCount++}`;
    this.values[id] = v;
    return id;
  }
}

export interface PatchPlan {
  set: Record<string, unknown>;
  remove: string[];
}

/**
 * Split a record patch into SET and REMOVE parts. A key present with value `undefined` removes the
 * attribute (e.g. `{ lease: undefined }` drops the lease). `version` is never patched by callers.
 * Identity fields may be repeated with their current value but not changed (BadRequestError).
 */
export function planPatch(patch: object, identity: Record<string, string>): PatchPlan {
  const set: Record<string, unknown> = {};
  const remove: string[] = [];
  for (const [attribute, value] of Object.entries(patch)) {
    if (attribute === 'version') continue;
    if (attribute in identity) {
      if (value !== identity[attribute]) throw new BadRequestError(`cannot change '${attribute}' of a stored record`);
      continue;
    }
    if (value === undefined) remove.push(attribute);
    else set[attribute] = value;
  }
  return { set, remove };
}

/** `SET #a = :a, … REMOVE #b, …` for the planned patch (plus any derived attributes). */
export function updateExpression(b: ExpressionBuilder, plan: PatchPlan): string {
  const sets = Object.entries(plan.set).map(([attribute, value]) => `${b.name(attribute)} = ${b.value(value)}`);
  const removes = plan.remove.map((attribute) => b.name(attribute));
  return [sets.length ? `SET ${sets.join(', ')}` : '', removes.length ? `REMOVE ${removes.join(', ')}` : '']
    .filter(Boolean)
    .join(' ');
}
