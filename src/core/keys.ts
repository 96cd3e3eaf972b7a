import { createHash } from 'node:crypto';

/**
 * Every Redis key name is built here, so the layout is in one place.
 *
 * Layout (N is the namespace `<prefix>cacheops:{<shard>}:`):
 *
 *   N q:<hash>                   a cached query / function / fragment / view value
 *   N lock:<hash>                dog-pile lock of that value
 *   N schemes:<table>            set of schemes (comma-joined sorted field names) used by conjunctions of <table>
 *   N conj:<table>:<conj>        set of value keys that depend on the conjunction <conj> (`f=v&g=w`);
 *                                in insideout mode a string instead: the conjunction's stamp (a nonce)
 *   N idx:<table>:<scheme>       set of conj key names of that scheme (for model-wide and partial invalidation)
 *   N gen:<table>                insideout mode: the table's generation, moved by a whole-table invalidation
 *   N epochs                     hash table -> counter, bumped by each invalidation (race protection)
 *   N simple:<key>               cacheops.cache values
 *   N stream:lease:<db>          the binlog consumer's lease (fencing token), MariaDB/MySQL change stream
 *   N stream:fence:<db>          counter the lease tokens are drawn from
 *   N stream:pos:<db>            the last acknowledged binlog position (JSON: gtid, file, position)
 *   N stream:done:<db>:<id>      `writes: 'stream'`: the change stream invalidated transaction <id> (xid, GTID; expires)
 *   N stream:done:<db>           the channel the consumer announces those transactions on
 *   N fence                      never exists: declared by scripts so that they wait out a slot migration (fenceKey)
 *   N probe:full                 a full Redis's probe write (pressure.ts): a token, expiring within a second
 *
 * The Lua scripts spell none of these: they are given the key names (KEYS), and
 * where they must derive a name from what Redis holds (the conj keys of the
 * schemes an invalidation finds) the prefix to append to (ARGV, conjPrefix and
 * indexPrefix). This is the layout of the first releases, with no version part;
 * a change to it puts one into the namespace (`<prefix>cacheops:v2:{<shard>}:`,
 * followed by parseKey and allKeysPattern), so that two versions of the library
 * in two processes, each running its own scripts (by their SHA), cannot mix keys
 * of two layouts. test/core/keys.test.ts pins every name.
 *
 * `{<shard>}` is a Redis Cluster hash tag: every key a script touches shares
 * it, so each script stays in one slot. On a standalone server there is one
 * shard (`{0}`); on a cluster the value keys spread over `clusterShards` tags and
 * invalidation runs once per tag.
 */

/** What escapeKeyPart escapes: `%`, the separators, hash tag and glob characters, backslash and `\s`. */
export const UNSAFE_KEY_CHARACTERS = /[%&=:,{}*?[\]\\\s]/;

const escapeCode = (code: number): string =>
  (code > 0xff ? `%u${code.toString(16).toUpperCase().padStart(4, '0')}` : `%${code.toString(16).toUpperCase().padStart(2, '0')}`);

/**
 * The escape of each character to escape, by UTF-16 code unit: those up to FF, and the
 * Unicode spaces of `\s` above it (the Zs category, U+FEFF, U+2028, U+2029; a test checks
 * every code unit against the regular expression).
 */
const ESCAPES = new Map<number, string>();
const ABOVE_FF = [0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff];
for (const code of [...Array.from({ length: 0x100 }, (_, c) => c), ...ABOVE_FF]) {
  if (UNSAFE_KEY_CHARACTERS.test(String.fromCharCode(code))) ESCAPES.set(code, escapeCode(code));
}
const LOW: readonly (string | undefined)[] = Array.from({ length: 0x100 }, (_, code) => ESCAPES.get(code));

/**
 * Escapes a name or value so it cannot forge a separator (`&`, `=`, `:`, `,`), a hash tag or a glob.
 * `%XX` for code points up to FF, `%uXXXX` above (the Unicode spaces of `\s`): a fixed width per
 * form keeps the escaping injective (`' 00'` and `'\u2000'` must not both give `%2000`).
 * Every write escapes each column of the rows it changed, so this is a loop over the text
 * rather than a replace with a callback per character.
 */
export function escapeKeyPart(text: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    const escape = code < 0x100 ? LOW[code] : ESCAPES.get(code);
    if (escape !== undefined) {
      out += text.slice(from, i) + escape;
      from = i + 1;
    }
  }
  return from === 0 ? text : out + text.slice(from);
}

/** `<prefix>cacheops:{<shard>}:` (N above). */
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
/**
 * A key that never exists, declared by the scripts that touch keys they do
 * not declare (the invalidation scripts: the conj and index keys they derive
 * from the schemes they find). While a
 * cluster slot migrates, a multi-key command with a missing key is refused
 * with TRYAGAIN on both nodes, so such a script never runs on a slot whose
 * keys are split between them (it would miss the keys not moved yet, or
 * create copies that the migration then overwrites); the client retries it
 * once the slot has settled. Elsewhere a missing declared key costs nothing.
 */
export const fenceKey = (ns: string): string => `${ns}fence`;
/**
 * The key a full Redis's probe writes (`SET ... PX`, pressure.ts): Redis refuses it with OOM
 * exactly while it is above maxmemory. It expires by itself, and invalidateAll deletes it.
 */
export const fullProbeKey = (ns: string): string => `${ns}probe:full`;
export const streamLeaseKey = (ns: string, db: string): string => `${ns}stream:lease:${escapeKeyPart(db)}`;
export const streamFenceKey = (ns: string, db: string): string => `${ns}stream:fence:${escapeKeyPart(db)}`;
export const streamPositionKey = (ns: string, db: string): string => `${ns}stream:pos:${escapeKeyPart(db)}`;
/** A transaction the change stream invalidated (`writes: 'stream'`); its channel is streamDoneChannel. */
export const streamDoneKey = (ns: string, db: string, id: string): string => `${ns}stream:done:${escapeKeyPart(db)}:${escapeKeyPart(id)}`;
export const streamDoneChannel = (ns: string, db: string): string => `${ns}stream:done:${escapeKeyPart(db)}`;
/**
 * Whether a key is the change stream's own state (lease, fence, position, done marks), not
 * cached data: invalidateAll leaves it, so a running consumer keeps its lease and position.
 */
export const isStreamKey = (key: string): boolean => key.includes('}:stream:');
export const simpleKey = (ns: string, key: string): string => `${ns}simple:${key}`;
/** `table`, `scheme` and `conj` below are escaped (escapeKeyPart). */
export const schemesKey = (ns: string, table: string): string => `${ns}schemes:${table}`;
export const genKey = (ns: string, table: string): string => `${ns}gen:${table}`;
/** What a conj key of a table starts with: invalidate.lua appends the conjunctions it derives. */
export const conjPrefix = (ns: string, table: string): string => `${ns}conj:${table}:`;
/** What an index key of a table starts with: invalidate.lua appends the schemes it finds. */
export const indexPrefix = (ns: string, table: string): string => `${ns}idx:${table}:`;
export const conjKey = (ns: string, table: string, conj: string): string => conjPrefix(ns, table) + conj;
export const indexKey = (ns: string, table: string, scheme: string): string => indexPrefix(ns, table) + scheme;

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
