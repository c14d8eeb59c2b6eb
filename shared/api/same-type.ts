/**
 * Compile-time agreement between a zod schema's type and the contract's type it describes: `Equal`
 * is true iff A and B are the same type — stricter than mutual assignability, so a field dropped,
 * added or made optional on one side fails too.
 */
export type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Fails to compile unless every entry is `true`; the error lists the tuple, so a `false` names the pair that drifted. */
export type AllTrue<T extends true[]> = T;
