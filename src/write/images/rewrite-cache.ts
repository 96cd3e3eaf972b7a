/**
 * Rewrites of write statements, remembered per model: a rewrite depends on
 * the model, the kind of write and the statement only, and Sequelize sends
 * an update or insert with bound parameters, so the same text comes again
 * and again. Scanning it anew each time cost about as much as the rest of
 * the library's work on the statement.
 */
import type { Rewrite } from './returning';
import { LruMap } from '../../core/lru';

/** Statements kept per model, the least recently used going first (a WHERE with values in its text never repeats). */
const LIMIT = 256;

/** A rewrite, or none: the statement is not rewritten (remembered too). */
interface Remembered { readonly rewrite: Rewrite | undefined }

const byModel = new WeakMap<object, LruMap<string, Remembered>>();

/** The rewrite `make` gives for this model, kind and statement, made once. */
export function rememberedRewrite(model: object, kind: string, sql: string, make: () => Rewrite | undefined): Rewrite | undefined {
  let cache = byModel.get(model);
  if (!cache) byModel.set(model, (cache = new LruMap({ maxEntries: LIMIT })));
  const key = `${kind}\u0000${sql}`;
  const found = cache.get(key);
  if (found) return found.rewrite;
  const rewrite = make();
  cache.set(key, { rewrite });
  return rewrite;
}
