import { createHash } from 'node:crypto';

/**
 * Every Redis key name is built here, so the layout is in one place.
 *
 * Layout (N is the namespace `<prefix>cacheops:{<shard>}:`):
 *
 *   N q:<hash>                   a cached query / function / fragment / view value
 *   N lock:<hash>                dog-pile lock of that value
 *   N schemes:<table>            set of schemes (comma-joined sorted field names) used by conjunctions of <table>
 *   N conj:<table>:<conj>        set of value keys that depend on the conjunction <conj> (`f=v&g=w`)
 *   N idx:<table>:<scheme>       set of conj key names of that scheme (for model-wide and partial invalidation)
 *   N epochs                     hash table -> counter, bumped by each invalidation (race protection)
 *   N simple:<key>               cacheops.cache values
 *
 * `{<shard>}` is a Redis Cluster hash tag: every key a script touches shares
 * it, so each script stays in one slot. On a standalone server there is one
 * shard (`{0}`); on a cluster the value keys spread over `clusterShards` tags and
 * invalidation runs once per tag.
 */

const UNSAFE = /[%&=:,{}*?[\]\\\s]/g;

/** Escapes a name or value so it cannot forge a separator (`&`, `=`, `:`, `,`), a hash tag or a glob. */
export function escapeKeyPart(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return `%${code < 16 ? '0' : ''}${code.toString(16).toUpperCase()}`;
  });
}

export interface KeySpace {
  /** `<prefix>cacheops:{<shard>}:` */
  readonly ns: string;
}

export function namespace(prefix: string, shard: number): string {
  return `${prefix}cacheops:{${shard}}:`;
}

/** The glob matching every key of an installation with this prefix (for invalidateAll). */
export function allKeysPattern(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, '\\$&')}cacheops:{*`;
}

export const valueKey = (ns: string, hash: string): string => `${ns}q:${hash}`;
export const lockKey = (ns: string, hash: string): string => `${ns}lock:${hash}`;
export const epochsKey = (ns: string): string => `${ns}epochs`;
export const simpleKey = (ns: string, key: string): string => `${ns}simple:${key}`;
/** Used by the Lua scripts too; keep them in step (see lua/*.lua). */
export const schemesKey = (ns: string, table: string): string => `${ns}schemes:${table}`;
export const conjKey = (ns: string, table: string, conj: string): string => `${ns}conj:${table}:${conj}`;
export const indexKey = (ns: string, table: string, scheme: string): string => `${ns}idx:${table}:${scheme}`;

/** A stable hex digest of any text (keys of user-chosen names go through it). */
export function hashText(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/** The shard of a value hash (first 8 hex digits, modulo the shard count). */
export function shardOf(hash: string, shards: number): number {
  if (shards <= 1) return 0;
  return Number.parseInt(hash.slice(0, 8), 16) % shards;
}
