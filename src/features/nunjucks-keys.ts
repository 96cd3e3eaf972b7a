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
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsError } from '../core/errors';
import type { Cacheops } from '../install';
import { stableStringify } from '../query/key';
import { prefixRegistryKey } from '../core/keys';
import { LruMap } from '../core/lru';

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
 * Pairs of (fragment identity, prefix), bounded by `memory.prefixes` (least
 * recently stored go first); invalidateFragment also deletes under every
 * prefix of the registry in Redis, so a pair forgotten here (or stored by
 * another process) is still reached.
 */
const prefixesSeen = new WeakMap<CacheopsCore, LruMap<string, true>>();

/** Remembers that fragments of this identity were stored under this prefix. */
export function rememberPrefix(core: CacheopsCore, id: string, prefix: string): void {
  let seen = prefixesSeen.get(core);
  if (!seen) prefixesSeen.set(core, (seen = new LruMap(core.config.memory.prefixes)));
  seen.set(`${id}\0${prefix}`, true);
}

async function prefixesOf(core: CacheopsCore, id: string): Promise<string[]> {
  const prefixes = new Set([core.prefixFor([])]);
  if (typeof core.config.prefix === 'string') return [...prefixes];
  const head = `${id}\0`;
  for (const pair of prefixesSeen.get(core)?.keys() ?? []) if (pair.startsWith(head)) prefixes.add(pair.slice(head.length));
  for (const prefix of await core.store.guard('invalidateFragment', () => core.redis.smembers(prefixRegistryKey), [] as string[])) prefixes.add(prefix);
  return [...prefixes];
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
    for (const prefix of await prefixesOf(core, t.id)) deletes.push(core.store.deleteValue(prefix, hash));
  }
  return (await Promise.all(deletes)).some(Boolean);
}
