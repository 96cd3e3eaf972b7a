/**
 * A fingerprint of a find call: a string that is equal for two calls only
 * when Sequelize would generate the same SQL for them and build the same
 * result from the same rows. The fast path (fast-path.ts) keys its prepared
 * selects by it.
 *
 * It is an injective encoding of the call's options, and it gives up
 * (undefined) on anything it cannot encode faithfully: class instances other
 * than Dates, Buffers, Sequelize's own SQL helpers (literal, fn, col, where,
 * cast, json) and associations; functions other than models; symbols other
 * than Sequelize's operators; options it does not know; cycles and very long
 * options. Giving up only means the call takes the normal path.
 *
 * Models are encoded by what makes their SQL: the class that defined the
 * attributes, the schema and the scope in force (`scope()` returns a new class
 * on every call, so class identity alone would never repeat). What else shapes
 * a model's SQL (attributes, associations) changes only through the methods
 * fast-path.ts watches.
 */
import { Association, Model, Utils, type ModelStatic } from 'sequelize';
import { isPlainObject } from '../core/tree';
import { opSymbols, schemaDelimiterOf, schemaOf, scopeOf } from '../core/sequelize-internals';

const opNames = new Map<symbol, string>(Object.entries(opSymbols()).map(([name, sym]) => [sym, name]));

const ids = new WeakMap<object, number>();
let nextId = 0;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = (nextId += 1)));
  return id;
}

/** Options that change neither the SQL nor the result's shape, applied per call by the fast path. */
const PER_CALL = new Set(['logging', 'benchmark', 'rejectOnEmpty']);

const FIND_OPTIONS = [
  'where', 'attributes', 'include', 'order', 'group', 'having', 'limit', 'offset', 'raw', 'nest', 'plain',
  'paranoid', 'subQuery', 'cacheops', 'transaction', 'useMaster', 'searchPath', 'hooks', 'indexHints',
  'tableHint', 'minifyAliases',
];

/**
 * The find options the fingerprint knows; any other makes it give up. `distinct`
 * and `col` are count's: findAll, findOne and findByPk read neither, and take
 * them when an application gives its findAndCountAll options to findAll (as
 * findAndCountAll itself does); they are encoded all the same. `replacements`
 * and `bind` fill a literal's placeholders when the query runs (the key's hash
 * covers them): a remembered select replays the values it was prepared with,
 * which the fingerprint makes the call's own.
 */
export const FIND_KNOWN: ReadonlySet<string> = new Set([...FIND_OPTIONS, 'distinct', 'col', 'replacements', 'bind']);
/** count's, aggregate's and findAndCountAll's: find's, with the two that shape the aggregate (a `dataType` is a class instance: given up on). */
export const COUNT_KNOWN: ReadonlySet<string> = FIND_KNOWN;
/**
 * An association method's: find's and the two a belongsToMany read takes.
 * `scope` and `schema` are not among them: they make the method read through
 * a class made per call, which the result would be built with.
 */
export const ASSOCIATION_KNOWN: ReadonlySet<string> = new Set([...FIND_OPTIONS, 'through', 'joinTableAttributes']);

const MAX_LENGTH = 8192;
const MAX_DEPTH = 24;

class Encoder {
  out = '';

  value(v: unknown, depth: number): boolean {
    if (depth > MAX_DEPTH || this.out.length > MAX_LENGTH) return false;
    switch (typeof v) {
      case 'string': this.out += JSON.stringify(v); return true;
      case 'number': this.out += Object.is(v, -0) ? 'n-0' : `n${v}`; return true;
      case 'boolean': this.out += v ? 't' : 'f'; return true;
      case 'bigint': this.out += `b${v}`; return true;
      case 'undefined': this.out += 'u'; return true;
      case 'function': return this.model(v, depth);
      case 'object': return v === null ? ((this.out += 'z'), true) : this.object(v, depth);
      default: return false;
    }
  }

  private object(v: object, depth: number): boolean {
    if (Array.isArray(v)) {
      this.out += '[';
      for (const item of v as unknown[]) {
        if (!this.value(item, depth + 1)) return false;
        this.out += ',';
      }
      this.out += ']';
      return true;
    }
    if (isPlainObject(v)) return this.properties(v, depth, undefined);
    if (v instanceof Date) { this.out += `D${v.getTime()}`; return true; }
    if (Buffer.isBuffer(v)) { this.out += `X${v.toString('hex')}`; return true; }
    if (v instanceof Association) { this.out += `A${idOf(v)}`; return true; }
    if (v instanceof Utils.SequelizeMethod) {
      this.out += `<${v.constructor.name}`;
      if (!this.properties(v, depth, undefined)) return false;
      this.out += '>';
      return true;
    }
    return false;
  }

  /** `{"key":value,…,@op:value,…}`; `known` limits the string keys (top-level options). */
  properties(v: object, depth: number, known: ReadonlySet<string> | undefined): boolean {
    this.out += '{';
    const record = v as Record<PropertyKey, unknown>;
    for (const key of Object.keys(v)) {
      if (known) {
        if (PER_CALL.has(key)) continue;
        if (!known.has(key)) return false;
      }
      this.out += `${JSON.stringify(key)}:`;
      if (!this.value(record[key], depth + 1)) return false;
      this.out += ',';
    }
    for (const sym of Object.getOwnPropertySymbols(v)) {
      const name = opNames.get(sym);
      if (name === undefined) return false;
      this.out += `@${name}:`;
      if (!this.value(record[sym], depth + 1)) return false;
      this.out += ',';
    }
    this.out += '}';
    return true;
  }

  /** A model class: the class that defined its attributes, its schema, its scope. */
  model(v: unknown, depth: number): boolean {
    if (!((v as { prototype?: unknown }).prototype instanceof Model)) return false;
    const cls = v as ModelStatic<Model>;
    let root = v as object;
    while (!Object.prototype.hasOwnProperty.call(root, 'rawAttributes')) {
      const parent = Object.getPrototypeOf(root) as object | null;
      if (!parent || parent === Model) return false;
      root = parent;
    }
    this.out += `M${idOf(root)}(`;
    if (!this.value(schemaOf(cls), depth + 1)) return false;
    this.out += ',';
    if (!this.value(schemaDelimiterOf(cls), depth + 1)) return false;
    this.out += ',';
    if (!this.value(scopeOf(cls) ?? {}, depth + 1)) return false;
    this.out += ')';
    return true;
  }
}

/**
 * The fingerprint of a find call on `model` with `options` (plus `param`
 * for findByPk); `kind` tells the entry point apart. undefined: not
 * fingerprintable, take the normal path.
 */
export function findFingerprint(kind: string, model: unknown, options: unknown, param?: unknown): string | undefined {
  return callFingerprint(kind, model, param === undefined ? [] : [param], options, FIND_KNOWN);
}

/**
 * The fingerprint of any read call: its kind, the model it reads, its other
 * arguments (each a value the encoder knows: an association, a key, the
 * conditions a has* call makes of its targets) and its options, of which only
 * the `known` keys are accepted. Every part is self-delimiting, so the
 * concatenation stays injective for a given kind and number of arguments.
 */
export function callFingerprint(kind: string, model: unknown, params: readonly unknown[], options: unknown, known: ReadonlySet<string>): string | undefined {
  const e = new Encoder();
  e.out = kind;
  if (!e.model(model, 0)) return undefined;
  for (const param of params) {
    if (!e.value(param, 0)) return undefined;
    e.out += ';';
  }
  if (options !== undefined && options !== null) {
    if (!isPlainObject(options) || !e.properties(options, 0, known)) return undefined;
  }
  return e.out.length > MAX_LENGTH ? undefined : e.out;
}
