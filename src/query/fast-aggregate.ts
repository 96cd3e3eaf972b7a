/**
 * The fast path of count, aggregate (and so max, min, sum, which call it) and
 * findAndCountAll: fingerprint, GET, the result as Sequelize makes it from the
 * row; Sequelize's option processing (cloning, scopes, include expansion and
 * validation, the count query's attributes) runs only for the first call of
 * a fingerprint, which remembers the selects it prepared (fast-path.ts).
 *
 * It steps aside in the cases the find fast path does (fast-path.ts
 * `eligible`), and also when the model has beforeCount hooks (count,
 * findAndCountAll) or find hooks (findAndCountAll's findAll), and for a field
 * or aggregate function that is not a string.
 */
import { isPlainObject } from '../core/tree';
import { callFingerprint, COUNT_KNOWN } from './fingerprint';
import type { FastPath, FindOptions } from './fast-path';
import { FIND_HOOKS, type AnyModel } from './hooks';

type Call<T> = (options: FindOptions | undefined) => Promise<T>;

const COUNT_HOOKS = ['beforeCount'] as const;
const FIND_AND_COUNT_HOOKS = [...FIND_HOOKS, ...COUNT_HOOKS] as const;

/** What count makes of aggregate's result: grouped rows get a number for a count. */
function countResult(result: unknown): unknown {
  if (Array.isArray(result)) return result.map((item: Record<string, unknown>) => ({ ...item, count: Number(item['count']) }));
  return result;
}

/** Model.count(options). */
export function fastCount(fast: FastPath, model: AnyModel, options: unknown, call: Call<unknown>): Promise<unknown> {
  if (!fast.extended || (options !== undefined && !isPlainObject(options))) return call(options as FindOptions | undefined);
  const o = options as FindOptions | undefined;
  if (!fast.eligible(model, o, COUNT_HOOKS)) return call(o);
  const fingerprint = callFingerprint('C', model, [], o, COUNT_KNOWN);
  if (fingerprint === undefined) return call(o);
  const entry = fast.entry(fingerprint);
  if (!entry) return fast.capture(fingerprint, model, o, call);
  if (!entry.raw) return call(o);
  return fast.readRaw(model, o, entry.raw, entry.option, call).then(countResult);
}

/** Model.aggregate(field, fn, options), which max, min and sum call. */
export function fastAggregate(fast: FastPath, model: AnyModel, field: unknown, fn: unknown, options: unknown, call: Call<unknown>): Promise<unknown> {
  if (!fast.extended || typeof field !== 'string' || typeof fn !== 'string' || (options !== undefined && !isPlainObject(options))) {
    return call(options as FindOptions | undefined);
  }
  const o = options as FindOptions | undefined;
  // aggregate runs no hooks of its own.
  if (!fast.eligible(model, o, [])) return call(o);
  const fingerprint = callFingerprint('G', model, [field, fn], o, COUNT_KNOWN);
  if (fingerprint === undefined) return call(o);
  const entry = fast.entry(fingerprint);
  if (!entry) return fast.capture(fingerprint, model, o, call);
  if (!entry.raw) return call(o);
  return fast.readRaw(model, o, entry.raw, entry.option, call);
}

/**
 * Model.findAndCountAll(options): its count (of the options without
 * attributes) and its findAll, both from the selects the first call
 * prepared, read at once as Sequelize runs them.
 */
export async function fastFindAndCountAll(fast: FastPath, model: AnyModel, options: unknown, call: Call<unknown>): Promise<unknown> {
  if (!fast.extended || (options !== undefined && !isPlainObject(options))) return call(options as FindOptions | undefined);
  const o = options as FindOptions | undefined;
  if (!fast.eligible(model, o, FIND_AND_COUNT_HOOKS)) return call(o);
  const fingerprint = callFingerprint('F', model, [], o, COUNT_KNOWN);
  if (fingerprint === undefined) return call(o);
  const entry = fast.entry(fingerprint);
  if (!entry) return fast.capture(fingerprint, model, o, call);
  const { raw, select } = entry;
  if (!raw || !select) return call(o);
  // Both parts through the cache, or neither (a part's own fallback would be this whole call).
  const core = fast.core;
  if (!core.planParsed(model, raw.prepared.op, entry.option, {}) || !core.planParsed(model, select.op, entry.option, {})) return call(o);
  const [count, rows] = await Promise.all([
    fast.readRaw(model, o, raw, entry.option, call).then(countResult),
    fast.read(model, o, select, entry.option, call),
  ]);
  return { count, rows: count === 0 ? [] : rows };
}
