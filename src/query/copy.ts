/**
 * Fresh copies of built query results, for the near cache: building instances
 * from decoded rows (bulkBuild) is most of a near hit's cost, so the near
 * cache builds a result once and hands every caller a copy of it instead.
 *
 * A copy is what bulkBuild would have returned for the same rows and
 * options, and shares nothing a caller can change with the kept result or
 * with other copies: instances are new objects of the same class with new
 * dataValues, _previousDataValues, _changed and _options; included instances
 * are copied the same way; Dates, Buffers, plain objects and arrays (JSON
 * columns, raw rows) are copied; other objects are structured-cloned.
 * Sequelize's own shared option parts (include, includeMap) stay shared, as
 * they are between the instances of one bulkBuild, except the include
 * elements whose `parent` is the options of an instance of the result (a
 * build that validates its includes points them at the last instance's
 * options): those are copied once per result and point at the copied
 * instance's options, so a copy has the same cycles as a fresh build (Node
 * 24's deep equality compares cycles, not only values).
 */
import { Model } from 'sequelize';
import { asInstance, instanceInternals, type InstanceInternals } from '../core/sequelize-internals';

type Internals = InstanceInternals;

type Options = Record<string, unknown>;

/** What one copy of a result remembers: each instance's options and their copies, and the include elements copied. */
interface CopyContext {
  readonly options: Map<Options, Options>;
  readonly includes: Map<Options, Options>;
}

/** A copy of a value found in a result: instances and containers are copied, primitives returned. */
export function copyValue(value: unknown): unknown {
  const ctx: CopyContext = { options: new Map(), includes: new Map() };
  const out = copyIn(value, ctx);
  relinkIncludes(ctx);
  return out;
}

/** A copy of a built instance, as the constructor would have made it from the same values. */
export function copyInstance<M extends Model>(instance: M): M {
  return copyValue(instance) as M;
}

function copyIn(value: unknown, ctx: CopyContext): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Model) return copyInstanceIn(value, ctx);
  if (Array.isArray(value)) return value.map((v) => copyIn(v, ctx));
  if (value instanceof Date) return new Date(value.getTime());
  if (Buffer.isBuffer(value)) return Buffer.from(value);
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto === Object.prototype || proto === null) {
    const out: Record<string, unknown> = proto === null ? Object.create(null) as Record<string, unknown> : {};
    for (const key of Object.keys(value)) out[key] = copyIn((value as Record<string, unknown>)[key], ctx);
    return out;
  }
  return structuredClone(value);
}

/** An instance's own options object (the constructor makes one per instance; its parts are shared). */
function copyOptions(options: Options | undefined, ctx: CopyContext): Options | undefined {
  if (!options) return options;
  const attributes = options['attributes'];
  const out = Array.isArray(attributes) ? { ...options, attributes: [...attributes] } : { ...options };
  ctx.options.set(options, out);
  return out;
}

/**
 * An include element whose parent is the options of an instance of the
 * result (or a copied element): copied once, pointing at the copies; nested
 * elements follow. Others stay shared.
 */
function includeOf(element: unknown, ctx: CopyContext): unknown {
  if (element === null || typeof element !== 'object') return element;
  const include = element as Options;
  const done = ctx.includes.get(include);
  if (done) return done;
  const parent = include['parent'] as Options | undefined;
  // The parent chain ends at options no instance of the result owns (a query's options, say): shared.
  const parentCopy = parent && (ctx.options.get(parent) ?? includeOf(parent, ctx));
  if (!parentCopy || parentCopy === parent) return include;
  const out: Options = { ...include, parent: parentCopy };
  ctx.includes.set(include, out);
  relinkOptions(include, out, ctx);
  return out;
}

/** Points a copied options object's include list and map at the copied elements. */
function relinkOptions(from: Options, to: Options, ctx: CopyContext): void {
  const list = from['include'];
  if (!Array.isArray(list)) return;
  const copied = list.map((e) => includeOf(e, ctx));
  if (copied.every((e, i) => e === list[i])) return;
  to['include'] = copied;
  const map = from['includeMap'];
  if (map && typeof map === 'object') {
    const out: Options = {};
    for (const [key, e] of Object.entries(map as Options)) out[key] = includeOf(e, ctx);
    to['includeMap'] = out;
  }
}

function relinkIncludes(ctx: CopyContext): void {
  for (const [from, to] of ctx.options) relinkOptions(from, to, ctx);
}

/**
 * Primitives need no copy, and most values of a row are primitives: each
 * object is first copied whole by a spread (one allocation, V8's fast clone),
 * then only its object-valued keys are visited. A near hit of a result of a
 * hundred instances spends most of its time here.
 */
function copyInstanceIn(instance: Model, ctx: CopyContext): Model {
  const src = instanceInternals(instance);
  const values = src.dataValues;
  const dataValues: Record<string, unknown> = { ...values };
  for (const key of Object.keys(values)) {
    const v = values[key];
    if (v !== null && typeof v === 'object') dataValues[key] = copyIn(v, ctx);
  }
  // Same value as in dataValues (the usual case after a build): the same copy, so identities match.
  const previous = src._previousDataValues;
  const previousCopy: Record<string, unknown> = { ...previous };
  for (const key of Object.keys(previous)) {
    const v = previous[key];
    if (v === null || typeof v !== 'object') continue;
    previousCopy[key] = v === values[key] && Object.prototype.hasOwnProperty.call(values, key) ? dataValues[key] : copyIn(v, ctx);
  }
  const out = Object.assign(Object.create(Object.getPrototypeOf(instance) as object) as Internals, src);
  for (const key of Object.keys(src)) {
    const v = src[key];
    if (key === 'dataValues') out[key] = dataValues;
    else if (key === '_previousDataValues') out[key] = previousCopy;
    // Usually empty after a build: a new Set without iterating the old one.
    else if (key === '_changed') out[key] = (v as Set<string>).size === 0 ? new Set<string>() : new Set(v as Set<string>);
    else if (key === '_options') out[key] = copyOptions(src._options, ctx);
    else if (v === null || typeof v !== 'object') continue;
    // Included instances are also own properties (instance.Author === instance.dataValues.Author).
    else if (key in values && v === values[key]) out[key] = dataValues[key];
    else out[key] = copyIn(v, ctx);
  }
  return asInstance(out);
}
