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

/**
 * Escapes a name or value so it cannot forge a separator (`&`, `=`, `:`, `,`), a hash tag or a glob.
 * `%XX` for code points up to FF, `%uXXXX` above (the Unicode spaces of `\s`): a fixed width per
 * form keeps the escaping injective (`' 00'` and `'\u2000'` must not both give `%2000`).
 */
export function escapeKeyPart(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `%u${code.toString(16).toUpperCase().padStart(4, '0')}` : `%${code.toString(16).toUpperCase().padStart(2, '0')}`;
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

/** The prefixes a `prefix` function has returned, for invalidateAll (not under any prefix). */
export const prefixRegistryKey = 'cacheops:prefixes';

export const valueKey = (ns: string, hash: string): string => `${ns}q:${hash}`;
export const lockKey = (ns: string, hash: string): string => `${ns}lock:${hash}`;
export const epochsKey = (ns: string): string => `${ns}epochs`;
export const simpleKey = (ns: string, key: string): string => `${ns}simple:${key}`;
/** Used by the Lua scripts too; keep them in step (see lua/*.lua). */
export const schemesKey = (ns: string, table: string): string => `${ns}schemes:${table}`;
export const conjKey = (ns: string, table: string, conj: string): string => `${ns}conj:${table}:${conj}`;
export const indexKey = (ns: string, table: string, scheme: string): string => `${ns}idx:${table}:${scheme}`;

/**
 * The hash where applications add their read counters (`cacheops.flushStats()`).
 * Outside the hash-tagged namespaces, so `invalidateAll` keeps it.
 */
export const statsKey = (prefix: string): string => `${prefix}cacheops:stats`;

/** Splits a key of this layout into namespace, kind (`q`, `conj`, `idx`, ...) and the rest; undefined for other keys. */
export function parseKey(key: string): { ns: string; kind: string; rest: string } | undefined {
  // A prefix never holds a brace, so the first `cacheops:{` starts the namespace.
  const m = /^([^{}]*cacheops:\{[^{}]*\}:)([a-z_]+)(?::([\s\S]*))?$/.exec(key);
  return m ? { ns: m[1]!, kind: m[2]!, rest: m[3] ?? '' } : undefined;
}

/** The index set that lists a conj key (its scheme is the field names of its conjunction). */
export function indexKeyOfConj(key: string): string | undefined {
  const parsed = parseKey(key);
  if (!parsed || parsed.kind !== 'conj') return undefined;
  const colon = parsed.rest.indexOf(':');
  if (colon < 0) return undefined;
  const conj = parsed.rest.slice(colon + 1);
  const scheme = conj === '' ? '' : conj.split('&').map((pair) => pair.slice(0, pair.indexOf('='))).join(',');
  return indexKey(parsed.ns, parsed.rest.slice(0, colon), scheme);
}

/** A stable hex digest of any text (keys of user-chosen names go through it). */
export function hashText(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/** The shard of a value hash (first 8 hex digits, modulo the shard count). */
export function shardOf(hash: string, shards: number): number {
  if (shards <= 1) return 0;
  return Number.parseInt(hash.slice(0, 8), 16) % shards;
}
