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
 * they are between the instances of one bulkBuild.
 */
import { Model } from 'sequelize';

interface Internals {
  dataValues: Record<string, unknown>;
  _previousDataValues: Record<string, unknown>;
  _options: Record<string, unknown> | undefined;
  [key: string]: unknown;
}

/** A copy of a value found in a result: instances and containers are copied, primitives returned. */
export function copyValue(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Model) return copyInstance(value);
  if (Array.isArray(value)) return value.map(copyValue);
  if (value instanceof Date) return new Date(value.getTime());
  if (Buffer.isBuffer(value)) return Buffer.from(value);
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto === Object.prototype || proto === null) {
    const out: Record<string, unknown> = proto === null ? Object.create(null) as Record<string, unknown> : {};
    for (const key of Object.keys(value)) out[key] = copyValue((value as Record<string, unknown>)[key]);
    return out;
  }
  return structuredClone(value);
}

/** An instance's own options object (the constructor makes one per instance; its parts are shared). */
function copyOptions(options: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!options) return options;
  const attributes = options['attributes'];
  return Array.isArray(attributes) ? { ...options, attributes: [...attributes] } : { ...options };
}

/** A copy of a built instance, as the constructor would have made it from the same values. */
export function copyInstance<M extends Model>(instance: M): M {
  const src = instance as unknown as Internals;
  const values = src.dataValues;
  const dataValues: Record<string, unknown> = {};
  for (const key of Object.keys(values)) dataValues[key] = copyValue(values[key]);
  // Same value as in dataValues (the usual case after a build): the same copy, so identities match.
  const same = (from: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(from)) out[key] = from[key] === values[key] && Object.prototype.hasOwnProperty.call(values, key) ? dataValues[key] : copyValue(from[key]);
    return out;
  };
  const out = Object.create(Object.getPrototypeOf(instance) as object) as Internals;
  for (const key of Object.keys(src)) {
    const v = src[key];
    if (key === 'dataValues') out[key] = dataValues;
    else if (key === '_previousDataValues') out[key] = same(src._previousDataValues);
    else if (key === '_changed') out[key] = new Set(v as Set<string>);
    else if (key === '_options') out[key] = copyOptions(src._options);
    // Included instances are also own properties (instance.Author === instance.dataValues.Author).
    else if (key in values && v === values[key]) out[key] = dataValues[key];
    else out[key] = copyValue(v);
  }
  return out as unknown as M;
}
