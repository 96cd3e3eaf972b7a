/**
 * Keys of cached template fragments, in one place so that the tags and
 * `invalidateFragment` always agree.
 *
 * A fragment is identified either by its template and position (the tag's
 * line; `line:col` for a second tag starting on the same line), or by an
 * explicit `name='...'` on the tag. Its extras (the tag's `extra=` value;
 * an array is spread) complete the key. The template name is the name the
 * loader knows it by (`'posts/list.njk'`), not a path of one machine.
 */
import { createHash } from 'node:crypto';
import type { CacheopsCore } from './cacheops';
import { CacheopsError } from './errors';
import type { Cacheops } from './install';
import { stableStringify } from './query/key';

/** The identity of an unnamed fragment: template name + position (`'12'` or `'12:30'`). */
export function templateFragmentId(template: string, position: string): string {
  return `tpl\0${template}\0${position}`;
}

/** The identity of a fragment with `name='...'`. */
export function namedFragmentId(name: string): string {
  return `name\0${name}`;
}

/** The extras of a tag's `extra=` (or `cache_key=`) value: none, one value, or an array's items. */
export function extrasOf(extra: unknown): unknown[] {
  if (extra === undefined) return [];
  return Array.isArray(extra) ? [...(extra as unknown[])] : [extra];
}

function normalizeExtras(extras: readonly unknown[]): unknown[] {
  // invalidateFragment('menu', ['a', 'b']) means the same as invalidateFragment('menu', 'a', 'b').
  const list = extras.length === 1 && Array.isArray(extras[0]) ? [...(extras[0] as unknown[])] : [...extras];
  while (list.length > 0 && list[list.length - 1] === undefined) list.pop();
  return list;
}

/** The value hash of a fragment. */
export function fragmentHash(id: string, extras: readonly unknown[]): string {
  return createHash('sha1').update('fragment\0').update(id).update('\0').update(stableStringify(normalizeExtras(extras))).digest('hex');
}

/** A tag position as invalidateFragment accepts it: a line number, or `'line'` / `'line:col'`. */
export function isPosition(v: unknown): v is number | string {
  return (typeof v === 'number' && Number.isInteger(v) && v > 0) || (typeof v === 'string' && /^\d+(:\d+)?$/.test(v));
}

/**
 * Where fragments were stored: with a prefix function the prefix depends on
 * the tables of the samples, which invalidateFragment cannot know otherwise.
 */
const prefixesSeen = new WeakMap<CacheopsCore, Map<string, Set<string>>>();
const MAX_REMEMBERED = 10_000;

/** Remembers that fragments of this identity were stored under this prefix. */
export function rememberPrefix(core: CacheopsCore, id: string, prefix: string): void {
  let byId = prefixesSeen.get(core);
  if (!byId) prefixesSeen.set(core, (byId = new Map()));
  const set = byId.get(id);
  if (set) set.add(prefix);
  else {
    if (byId.size >= MAX_REMEMBERED) byId.clear();
    byId.set(id, new Set([prefix]));
  }
}

function prefixesOf(core: CacheopsCore, id: string): string[] {
  return [...new Set([core.prefixFor([]), ...(prefixesSeen.get(core)?.get(id) ?? [])])];
}

/**
 * Drops one cached fragment: `(template, line, ...extras)` or `(name, ...extras)`.
 * When the arguments read both ways (a name followed by a number), both
 * entries are dropped: a spurious delete only costs one recomputation.
 * Resolves true when something was deleted.
 */
export async function invalidateFragmentOf(cacheops: Cacheops, nameOrTemplate: string, extras: readonly unknown[]): Promise<boolean> {
  if (typeof nameOrTemplate !== 'string' || nameOrTemplate === '') {
    throw new CacheopsError('invalidateFragment: give a template name and line, or a fragment name (the name= of the tag)');
  }
  const core = cacheops.core;
  if (!core.config.enabled) return false;
  const targets: { id: string; extras: readonly unknown[] }[] = [{ id: namedFragmentId(nameOrTemplate), extras }];
  const [first, ...rest] = extras;
  if (isPosition(first)) targets.push({ id: templateFragmentId(nameOrTemplate, String(first)), extras: rest });
  const deletes: Promise<boolean>[] = [];
  for (const t of targets) {
    const hash = fragmentHash(t.id, t.extras);
    for (const prefix of prefixesOf(core, t.id)) deletes.push(core.store.deleteValue(prefix, hash));
  }
  return (await Promise.all(deletes)).some(Boolean);
}
