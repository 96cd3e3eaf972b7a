/**
 * Numbers for `cacheops stats`: keys by kind, Redis memory, hit counts.
 *
 * Hits and misses come from two honest sources. Redis's own keyspace
 * counters (INFO stats) are exact but cover the whole server: every client,
 * every key. cacheops's counters are exact for cacheops reads but live in each
 * process; counting them in Redis on every read would add a round trip to
 * each read, so applications add them up in a hash with `flushStats()` when
 * they choose (periodically, at shutdown), and the CLI reports what was flushed.
 */
import { hostname } from 'node:os';
import type { CacheopsCore, CacheopsStats } from '../core/cacheops-core';
import { isCluster, scanAll, type RedisClient } from '../core/redis';
import { parseKey, statsKey } from '../core/keys';
import type { ChangeStreamStats } from '../stream/source';

export interface KeyCounts {
  /** Cached values (`q:`): queries, functions, fragments, views. */
  values: number;
  /** Conjunction sets (`conj:`), or stamps in insideout mode. */
  conj: number;
  /** Index sets (`idx:`). */
  idx: number;
  /** Scheme sets (`schemes:`). */
  schemes: number;
  locks: number;
  /** `cacheops.cache` entries (`simple:`). */
  simple: number;
  epochs: number;
  /** Keys of other kinds (insideout generations...). */
  other: number;
  total: number;
}

const KIND_FIELD: Readonly<Record<string, keyof KeyCounts>> = {
  q: 'values', conj: 'conj', idx: 'idx', schemes: 'schemes', lock: 'locks', simple: 'simple', epochs: 'epochs',
};

/** The master nodes to scan: the client itself, or every master of a cluster. */
export function scanNodes(client: RedisClient): RedisClient[] {
  return isCluster(client) ? client.nodes('master') : [client];
}

const emptyCounts = (): KeyCounts => ({ values: 0, conj: 0, idx: 0, schemes: 0, locks: 0, simple: 0, epochs: 0, other: 0, total: 0 });

/** The keys of every installation found in a Redis, by key prefix. */
export interface KeysByPrefix {
  /** Key counts by prefix ('' for keys without one). */
  readonly prefixes: Map<string, KeyCounts>;
  /** Prefixes with a stats hash (`<prefix>cacheops:stats`), whether or not they have keys. */
  readonly withStats: Set<string>;
}

/** The prefix of a namespaced key: what stands before its `cacheops:{`. */
function prefixOfNamespace(ns: string): string {
  return ns.slice(0, ns.lastIndexOf('cacheops:{'));
}

/**
 * Counts every cacheops key of the server by prefix and kind: one SCAN pass
 * (MATCH `*cacheops:*`, never KEYS). `onPage(visited, total)` follows the pass
 * (visited is approximate: pages x COUNT).
 */
export async function countKeysByPrefix(client: RedisClient, chunkSize: number, onPage?: (visited: number, total: number) => void): Promise<KeysByPrefix> {
  const prefixes = new Map<string, KeyCounts>();
  const withStats = new Set<string>();
  const nodes = scanNodes(client);
  let total = 0;
  if (onPage) for (const node of nodes) total += await node.dbsize();
  let visited = 0;
  for (const node of nodes) {
    await scanAll((cursor) => node.scan(cursor, 'MATCH', '*cacheops:*', 'COUNT', chunkSize), (keys) => {
      for (const key of keys) {
        const parsed = parseKey(key);
        if (!parsed) {
          if (key.endsWith('cacheops:stats')) withStats.add(key.slice(0, -'cacheops:stats'.length));
          continue;
        }
        const prefix = prefixOfNamespace(parsed.ns);
        let counts = prefixes.get(prefix);
        if (!counts) prefixes.set(prefix, (counts = emptyCounts()));
        counts[KIND_FIELD[parsed.kind] ?? 'other'] += 1;
        counts.total += 1;
      }
      visited = Math.min(total, visited + chunkSize);
      onPage?.(visited, total);
    });
  }
  return { prefixes, withStats };
}

/** Sums key counts. */
export function addCounts(counts: Iterable<KeyCounts>): KeyCounts {
  const sum = emptyCounts();
  for (const c of counts) for (const k of Object.keys(sum) as (keyof KeyCounts)[]) sum[k] += c[k];
  return sum;
}

export interface ServerInfo {
  /** Bytes, summed over the masters. */
  readonly usedMemory: number;
  readonly keyspaceHits: number;
  readonly keyspaceMisses: number;
}

function infoField(info: string, name: string): number {
  const m = new RegExp(`^${name}:(\\d+)`, 'm').exec(info);
  return m ? Number(m[1]) : 0;
}

/** Memory and keyspace hit counters of the whole server (every master of a cluster). */
export async function serverInfo(client: RedisClient): Promise<ServerInfo> {
  let usedMemory = 0;
  let keyspaceHits = 0;
  let keyspaceMisses = 0;
  for (const node of scanNodes(client)) {
    const info = `${await node.info('memory')}\n${await node.info('stats')}`;
    usedMemory += infoField(info, 'used_memory');
    keyspaceHits += infoField(info, 'keyspace_hits');
    keyspaceMisses += infoField(info, 'keyspace_misses');
  }
  return { usedMemory, keyspaceHits, keyspaceMisses };
}

export type FlushedCounters = Partial<Record<keyof CacheopsStats, number>>;

const COUNTER_NAMES: readonly (keyof CacheopsStats)[] = ['hits', 'misses', 'stores', 'refusedStores', 'invalidations', 'modelInvalidations'];

/** What applications flushed under this prefix; undefined when nothing was. */
export async function flushedCounters(client: RedisClient, prefix: string): Promise<FlushedCounters | undefined> {
  const raw = await client.hgetall(statsKey(prefix));
  const out: FlushedCounters = {};
  for (const name of COUNTER_NAMES) if (raw[name] !== undefined) out[name] = Number(raw[name]);
  return Object.keys(out).length ? out : undefined;
}

/** `stats().changeStream` of the consumer that flushed last, with who it was and when. */
export interface FlushedStream extends ChangeStreamStats {
  readonly host: string;
  readonly pid: number;
  /** When it was flushed (ms since the epoch). */
  readonly at: number;
}

/** The field of the stats hash the consumer writes its `stats().changeStream` to. */
const STREAM_FIELD = 'changeStream';

/** What the last flushing consumer wrote; undefined when none did (or it is not readable). */
export async function flushedStream(client: RedisClient, prefix: string): Promise<FlushedStream | undefined> {
  const raw = await client.hget(statsKey(prefix), STREAM_FIELD);
  if (raw === null) return undefined;
  try {
    return JSON.parse(raw) as FlushedStream;
  } catch {
    return undefined;
  }
}

/** The counters of each installation at its last successful flush. */
const flushed = new WeakMap<CacheopsCore, CacheopsStats>();

/** The prefix stats live under: the installation's string prefix ('' for a prefix function). */
export function statsPrefix(core: CacheopsCore): string {
  return typeof core.config.prefix === 'string' ? core.config.prefix : '';
}

/** Adds the counters since the last flush to the stats hash (one round trip). */
export async function flushStats(core: CacheopsCore): Promise<void> {
  if (!core.config.enabled || core.closed) return;
  const before: CacheopsStats = flushed.get(core) ?? { hits: 0, misses: 0, stores: 0, refusedStores: 0, invalidations: 0, modelInvalidations: 0, nearHits: 0, staleHits: 0, checks: 0, stale: 0, fullStores: 0 };
  const now = { ...core.counters };
  const deltas = COUNTER_NAMES.map((name) => [name, now[name] - before[name]] as const).filter(([, d]) => d !== 0);
  // The consumer's stream figures (one process reads the stream; standbys have none to tell).
  const stream = core.stream?.stats.role === 'consumer'
    ? JSON.stringify({ ...core.stream.stats, host: hostname(), pid: process.pid, at: Date.now() } satisfies FlushedStream) : undefined;
  if (deltas.length === 0 && stream === undefined) return;
  // Taken before the await so that two concurrent flushes never add the same reads twice;
  // a failed flush gives its deltas back.
  flushed.set(core, now);
  const giveBack = (): void => {
    const current = { ...(flushed.get(core) ?? now) };
    for (const [name, delta] of deltas) current[name] -= delta;
    flushed.set(core, current);
  };
  const key = statsKey(statsPrefix(core));
  let ok = false;
  try {
    ok = await core.store.guard('a stats flush', async () => {
      const multi = core.redis.multi();
      for (const [name, delta] of deltas) multi.hincrby(key, name, delta);
      if (stream !== undefined) multi.hset(key, STREAM_FIELD, stream);
      await multi.exec();
      return true;
    }, false);
  } finally {
    if (!ok) giveBack();
  }
}
