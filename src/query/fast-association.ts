/**
 * The fast path of the association methods that read: `get` of hasOne,
 * belongsTo, hasMany and belongsToMany, and `count` and `has` of the last
 * two (what `article.getAuthor()`, `user.countFollowers()`,
 * `article.hasUser(user)` call). Each of them builds find options from its
 * arguments (the instance's key, the targets' keys, a through include) and
 * calls findAll (has: on a class unscoped() makes per call), so a hit paid all
 * of that before the find fast path could even fingerprint the result.
 *
 * Here the call itself is fingerprinted: the association, the values the
 * method takes from its arguments (read exactly as the method reads them),
 * and the options. The first call of a fingerprint runs the method and
 * remembers its select; later ones read that select and make the method's
 * result from its rows as the method does (the rows; the count; whether
 * every target was found).
 *
 * It steps aside as the find fast path does (a transaction, a lock, find
 * hooks on the target, ...), for several source instances at once, for the
 * `scope` and `schema` options (the method reads through a class made per
 * call, and builds its result with it), and for a has* whose target keys are
 * not plain values (Sequelize compares them with deep equality).
 */
import { Model, type ModelStatic } from 'sequelize';
import { isPlainObject } from '../core/tree';
import { ASSOCIATION_KNOWN, callFingerprint } from './fingerprint';
import type { FastPath, FindOptions } from './fast-path';
import type { AnyModel } from './hooks';
import { associationPrototype } from '../core/sequelize-internals';

interface AssociationLike {
  readonly target: AnyModel;
  readonly sourceKey: string;
  readonly foreignKey: string;
  readonly targetKey: string;
}

type Method = (this: AssociationLike, ...args: unknown[]) => Promise<unknown>;

interface Spec {
  /** The fingerprint's kind: one per class and method. */
  readonly kind: string;
  /** Where the options are among the arguments. */
  readonly optionsAt: number;
  /** The values the method takes from its arguments, read as it reads them; undefined: step aside. */
  keys(a: AssociationLike, args: readonly unknown[]): unknown[] | undefined;
  /** The method's result from its findAll's. */
  finish(result: unknown, a: AssociationLike, keys: readonly unknown[]): unknown;
}

type Getter = Model & { get(key: string, options?: { raw: boolean }): unknown };

const single = (instance: unknown): Getter | undefined => (instance instanceof Model ? instance as Getter : undefined);
const rows = (result: unknown): unknown => result;
const count = (result: unknown): number => parseInt((result as { count: string }).count, 10);

const isPlainValue = (v: unknown): boolean => v === null || (typeof v !== 'object' && typeof v !== 'function');

/**
 * What `instance.where()` returns, made without its deep clone: the primary
 * key's raw values under their column names, keyed in the order Sequelize's
 * mapWhereFieldNames leaves them. Only for plain values (as has* mostly
 * meets them); anything else, or a model without a primary key, asks where()
 * itself. On a hit this was most of a has* call's own work (the clone walks
 * every value with lodash).
 */
function instanceWhere(t: Model): Record<string, unknown> {
  const cls = t.constructor as ModelStatic<Model>;
  const pks = cls.primaryKeyAttributes;
  if (pks.length === 0) return t.where() as Record<string, unknown>;
  const where: Record<string, unknown> = {};
  for (const attribute of pks) {
    const value = (t as Getter).get(attribute, { raw: true });
    if (!isPlainValue(value)) return t.where() as Record<string, unknown>;
    where[attribute] = value;
  }
  // As mapWhereFieldNames: each attribute whose column is named otherwise moves to that name.
  for (const attribute of Object.keys(where)) {
    // Sequelize sets each attribute's field (its own name when not renamed).
    const raw = cls.rawAttributes[attribute];
    if (raw?.field !== undefined && raw.field !== attribute) {
      where[raw.field as string] = where[attribute];
      delete where[attribute];
    }
  }
  return where;
}

/** The conditions has* makes of its targets: an instance's where(), else `{ [key]: value }`. */
function targetConditions(a: AssociationLike, targets: unknown, key: string): Record<string, unknown>[] {
  return (Array.isArray(targets) ? targets : [targets]).map((t: unknown) => (t instanceof a.target ? instanceWhere(t as Model) : { [key]: t }));
}

/** lodash isEqual for a plain value against anything. */
const sameValue = (a: unknown, b: unknown): boolean => a === b || (a !== a && b !== b);

const HAS_MANY: Record<string, Spec> = {
  get: {
    kind: 'aHg', optionsAt: 1, finish: rows,
    keys: (a, [i]) => { const s = single(i); return s && [s.get(a.sourceKey, { raw: true })]; },
  },
  count: {
    kind: 'aHc', optionsAt: 1, finish: count,
    keys: (a, [i]) => { const s = single(i); return s && [s.get(a.sourceKey, { raw: true })]; },
  },
  has: {
    kind: 'aHh', optionsAt: 2,
    keys: (a, [i, targets]) => { const s = single(i); return s && [s.get(a.sourceKey, { raw: true }), targetConditions(a, targets, a.target.primaryKeyAttribute)]; },
    finish: (result, _a, keys) => (result as unknown[]).length === (keys[1] as unknown[]).length,
  },
};

const BELONGS_TO_MANY: Record<string, Spec> = {
  get: {
    kind: 'aMg', optionsAt: 1, finish: rows,
    keys: (a, [i]) => { const s = single(i); return s && [s.get(a.sourceKey)]; },
  },
  count: {
    kind: 'aMc', optionsAt: 1, finish: count,
    keys: (a, [i]) => { const s = single(i); return s && [s.get(a.sourceKey)]; },
  },
  has: {
    kind: 'aMh', optionsAt: 2,
    keys: (a, [i, targets]) => {
      const s = single(i);
      if (!s) return undefined;
      const conditions = targetConditions(a, targets, a.targetKey);
      return conditions.every((c) => isPlainValue(c[a.targetKey])) ? [s.get(a.sourceKey), conditions] : undefined;
    },
    // As Sequelize: every target's key is among the rows'.
    finish: (result, a, keys) => (keys[1] as Record<string, unknown>[]).every((c) =>
      (result as Record<string, unknown>[]).some((row) => sameValue(c[a.targetKey], row[a.targetKey]))),
  },
};

const HAS_ONE: Record<string, Spec> = {
  get: { kind: 'aOg', optionsAt: 1, finish: rows, keys: (a, [i]) => { const s = single(i); return s && [s.get(a.sourceKey)]; } },
};

const BELONGS_TO: Record<string, Spec> = {
  get: { kind: 'aBg', optionsAt: 1, finish: rows, keys: (a, [i]) => { const s = single(i); return s && [s.get(a.foreignKey)]; } },
};

function withOptions(args: readonly unknown[], at: number, options: unknown): unknown[] {
  const out = [...args];
  while (out.length < at) out.push(undefined);
  out[at] = options;
  return out;
}

/** Runs an association method call through the fast path when it can. */
function fastAssociation(fast: FastPath, a: AssociationLike, spec: Spec, args: unknown[], original: Method): Promise<unknown> {
  const options = args[spec.optionsAt];
  const call = (o: unknown): Promise<unknown> => original.apply(a, withOptions(args, spec.optionsAt, o));
  if (!fast.extended || (options !== undefined && !isPlainObject(options))) return call(options);
  const o = options as FindOptions | undefined;
  if (o && ('scope' in o || 'schema' in o || 'schemaDelimiter' in o)) return call(o);
  if (!fast.eligible(a.target, o)) return call(o);
  const keys = spec.keys(a, args);
  if (!keys) return call(o);
  const fingerprint = callFingerprint(spec.kind, a.target, [a, ...keys], o, ASSOCIATION_KNOWN);
  if (fingerprint === undefined) return call(o);
  const entry = fast.entry(fingerprint);
  if (!entry) return fast.capture(fingerprint, a.target, o, call);
  const select = entry.select;
  if (!select) return call(o);
  // The class the method read through (has*: an unscoped() one; its rows are raw).
  const model = select.model as AnyModel;
  // Cached or not is decided before reading: the method's own fallback would give its result, not findAll's.
  const decision = fast.core.planParsed(model, select.op, entry.option, {});
  if (!decision) return call(o);
  return fast.readRemembered(model, o, select, entry.option, call, decision).then((result) => spec.finish(result, a, keys));
}

type Prototype = Record<string, Method>;

/** Patches the association classes' read methods (once per process); `of` finds an installation's fast path. */
export function patchAssociations(of: (a: AssociationLike) => FastPath | undefined): void {
  const table: ['HasMany' | 'BelongsToMany' | 'HasOne' | 'BelongsTo', Record<string, Spec>][] = [['HasMany', HAS_MANY], ['BelongsToMany', BELONGS_TO_MANY], ['HasOne', HAS_ONE], ['BelongsTo', BELONGS_TO]];
  for (const [name, specs] of table) {
    const proto = associationPrototype<Prototype>(name);
    if (!proto) continue;
    for (const [method, spec] of Object.entries(specs)) {
      const original = proto[method];
      if (typeof original !== 'function') continue;
      proto[method] = function (this: AssociationLike, ...args: unknown[]) {
        const fast = of(this);
        return fast ? fastAssociation(fast, this, spec, args, original) : original.apply(this, args);
      };
    }
  }
}
