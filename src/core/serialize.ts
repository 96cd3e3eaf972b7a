/**
 * Cached bytes: one format byte, then V8's structured serialization (fast, and
 * keeps Date, Buffer, BigInt, Map, Set, typed arrays). Model instances in
 * function results are stored as tagged plain objects and rebuilt on read.
 */
import { serialize, deserialize } from 'node:v8';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import { CacheopsSerializationError } from './errors';
import { includeNamesOf } from './sequelize-internals';

const FORMAT = 1;

/** Encodes a value made only of serializable parts (no functions, symbols, class instances). */
export function encodeRaw(value: unknown): Buffer {
  let body: Buffer;
  try {
    body = serialize(value);
  } catch (error) {
    throw new CacheopsSerializationError(`cannot cache this value: ${(error as Error).message}`, { cause: error });
  }
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = FORMAT;
  body.copy(out, 1);
  return out;
}

/** Decodes bytes from encodeRaw; undefined when they are of another format (treated as a miss). */
export function decodeRaw(bytes: Buffer): { value: unknown } | undefined {
  if (bytes.length < 1 || bytes[0] !== FORMAT) return undefined;
  try {
    return { value: deserialize(bytes.subarray(1)) };
  } catch {
    return undefined;
  }
}

const INSTANCE_TAG = '__cacheops_instance__';

interface TaggedInstance {
  readonly [INSTANCE_TAG]: string;
  readonly values: unknown;
  readonly include: readonly string[];
}

function isModelInstance(v: object): v is Model {
  const ctor = (v as { constructor?: { sequelize?: unknown; rawAttributes?: unknown } }).constructor;
  return ctor !== undefined && typeof ctor.rawAttributes === 'object' && 'dataValues' in v;
}

const PASS_THROUGH = [Date, Buffer, Map, Set, RegExp, ArrayBuffer, Uint8Array];

/** Plain nested values of an instance (included instances become plain too). */
export function instanceValues(instance: Model): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(instance.dataValues as Record<string, unknown>)) {
    if (Array.isArray(v)) out[k] = v.map((x) => (typeof x === 'object' && x !== null && isModelInstance(x) ? instanceValues(x) : x));
    else if (typeof v === 'object' && v !== null && isModelInstance(v)) out[k] = instanceValues(v);
    else out[k] = v;
  }
  return out;
}

function includeNames(instance: Model): string[] {
  const names = includeNamesOf(instance);
  return names ? [...names] : [];
}

/** Walks a function result, tagging model instances; throws on what cannot be stored. */
function toStorable(value: unknown, path: string, seen: Set<object>): unknown {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'function' || typeof value === 'symbol') {
      throw new CacheopsSerializationError(`cannot cache a ${typeof value} at ${path}`);
    }
    return value;
  }
  if (seen.has(value)) throw new CacheopsSerializationError(`cannot cache a cyclic value at ${path}`);
  if (PASS_THROUGH.some((c) => value instanceof c)) return value;
  if (isModelInstance(value)) {
    const tagged: TaggedInstance = {
      [INSTANCE_TAG]: (value.constructor as ModelStatic<Model>).name,
      values: instanceValues(value),
      include: includeNames(value),
    };
    return tagged;
  }
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v, i) => toStorable(v, `${path}[${i}]`, seen));
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
      throw new CacheopsSerializationError(`cannot cache an instance of ${name} at ${path} (only plain data, Date, Buffer, BigInt, Map, Set and model instances)`);
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toStorable(v, `${path}.${k}`, seen);
    return out;
  } finally {
    seen.delete(value);
  }
}

/**
 * Rebuilds tagged model instances. Without a Sequelize (a file cache used
 * outside an application), plain values decode and an instance is an error.
 */
function fromStorable(value: unknown, sequelize: Sequelize | undefined): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (PASS_THROUGH.some((c) => value instanceof c)) return value;
  if (Array.isArray(value)) return value.map((v) => fromStorable(v, sequelize));
  const tag = (value as Record<string, unknown>)[INSTANCE_TAG];
  if (typeof tag === 'string') {
    const t = value as TaggedInstance;
    if (!sequelize) throw new CacheopsSerializationError(`the cached value holds a ${tag} instance: a Sequelize instance is needed to rebuild it`);
    const model = sequelize.models[tag];
    if (!model) throw new CacheopsSerializationError(`cached value names an unknown model ${tag}`);
    const include = t.include.filter((name) => name in model.associations)
      .map((name) => ({ association: model.associations[name]! }));
    return model.build(t.values as Record<string, unknown>, { isNewRecord: false, raw: true, include } as never);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = fromStorable(v, sequelize);
  return out;
}

/** Encodes any supported value (function results, simple cache). */
export function encodeValue(value: unknown): Buffer {
  return encodeRaw(toStorable(value, 'value', new Set()));
}

/** Decodes encodeValue bytes; undefined on an unknown format. Model instances need `sequelize`. */
export function decodeValue(bytes: Buffer, sequelize?: Sequelize): { value: unknown } | undefined {
  const raw = decodeRaw(bytes);
  return raw === undefined ? undefined : { value: fromStorable(raw.value, sequelize) };
}
