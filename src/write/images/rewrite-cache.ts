/**
 * Rewrites of write statements, remembered per model: a rewrite depends on
 * the model, the kind of write and the statement only, and Sequelize sends
 * an update or insert with bound parameters, so the same text comes again
 * and again. Scanning it anew each time cost about as much as the rest of
 * the library's work on the statement.
 */
import type { Rewrite } from './postgres';

/** Statements kept per model; past it the model's entries are dropped (a WHERE with values in its text never repeats). */
const LIMIT = 256;

const byModel = new WeakMap<object, Map<string, Rewrite | undefined>>();

/** The rewrite `make` gives for this model, kind and statement, made once. */
export function rememberedRewrite(model: object, kind: string, sql: string, make: () => Rewrite | undefined): Rewrite | undefined {
  let cache = byModel.get(model);
  if (!cache) byModel.set(model, (cache = new Map()));
  const key = `${kind}\u0000${sql}`;
  if (cache.has(key)) return cache.get(key);
  const made = make();
  if (cache.size >= LIMIT) cache.clear();
  cache.set(key, made);
  return made;
}
