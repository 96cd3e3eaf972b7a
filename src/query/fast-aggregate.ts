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

type Entry = NonNullable<ReturnType<FastPath['entry']>>;

/**
 * What every fast call does first: its remembered entry, or, without one, the
 * call's answer (the normal path when the call steps aside or has no
 * fingerprint; on a fingerprint's first call, the normal path with a capture).
 */
function lookup(
  fast: FastPath, model: AnyModel, kind: string, args: readonly unknown[], options: unknown, hooks: readonly string[], call: Call<unknown>,
): { readonly entry: Entry; readonly o: FindOptions | undefined } | { readonly answer: Promise<unknown> } {
  const o = options as FindOptions | undefined;
  if (!fast.extended || (options !== undefined && !isPlainObject(options)) || !fast.eligible(model, o, hooks)) return { answer: call(o) };
  const fingerprint = callFingerprint(kind, model, args, o, COUNT_KNOWN);
  if (fingerprint === undefined) return { answer: call(o) };
  const entry = fast.entry(fingerprint);
  return entry ? { entry, o } : { answer: fast.capture(fingerprint, model, o, call) };
}

/** Model.count(options). */
export function fastCount(fast: FastPath, model: AnyModel, options: unknown, call: Call<unknown>): Promise<unknown> {
  const found = lookup(fast, model, 'C', [], options, COUNT_HOOKS, call);
  if ('answer' in found) return found.answer;
  const { entry, o } = found;
  if (!entry.raw) return call(o);
  return fast.readRememberedRaw(model, o, entry.raw, entry.option, call).then(countResult);
}

/** Model.aggregate(field, fn, options), which max, min and sum call. */
export function fastAggregate(fast: FastPath, model: AnyModel, field: unknown, fn: unknown, options: unknown, call: Call<unknown>): Promise<unknown> {
  if (typeof field !== 'string' || typeof fn !== 'string') return call(options as FindOptions | undefined);
  // aggregate runs no hooks of its own.
  const found = lookup(fast, model, 'G', [field, fn], options, [], call);
  if ('answer' in found) return found.answer;
  const { entry, o } = found;
  if (!entry.raw) return call(o);
  return fast.readRememberedRaw(model, o, entry.raw, entry.option, call);
}

/**
 * Model.findAndCountAll(options): its count (of the options without
 * attributes) and its findAll, both from the selects the first call
 * prepared, read at once as Sequelize runs them.
 */
export async function fastFindAndCountAll(fast: FastPath, model: AnyModel, options: unknown, call: Call<unknown>): Promise<unknown> {
  const found = lookup(fast, model, 'F', [], options, FIND_AND_COUNT_HOOKS, call);
  if ('answer' in found) return found.answer;
  const { entry, o } = found;
  const { raw, select } = entry;
  if (!raw || !select) return call(o);
  // Both parts through the cache, or neither (a part's own fallback would be this whole call).
  const core = fast.core;
  const countDecision = core.planParsed(model, raw.prepared.op, entry.option, {});
  const rowsDecision = countDecision && core.planParsed(model, select.op, entry.option, {});
  if (!countDecision || !rowsDecision) return call(o);
  const [count, rows] = await Promise.all([
    fast.readRememberedRaw(model, o, raw, entry.option, call, countDecision).then(countResult),
    fast.readRemembered(model, o, select, entry.option, call, rowsDecision),
  ]);
  return { count, rows: count === 0 ? [] : rows };
}
