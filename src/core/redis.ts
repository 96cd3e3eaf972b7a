/**
 * The Redis connection: built from a URL, options, a ready ioredis instance or
 * a Sentinel description; our Lua scripts are registered on it as commands
 * (ioredis sends EVALSHA and falls back to EVAL when the script is not loaded).
 */
import IORedis, { Cluster, type Redis, type RedisOptions } from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RedisConfig } from './config';
import { CacheopsConfigError } from './errors';

export type RedisClient = Redis | Cluster;

/**
 * The scripts of lua/*.lua, by command name and key count (lua/includes/ holds what they share);
 * `keys: undefined` is a count that varies by call: the first argument says how many keys follow.
 * The scripts that only delete or bump small counters start with `#!lua flags=allow-oom`, so they
 * run on a full Redis (7 and later); `bare` is the same script without that line, for a Redis < 7.
 */
const SCRIPTS: Readonly<Record<string, { readonly file: string; readonly keys: number | undefined; readonly bare?: true }>> = {
  cacheopsFetch: { file: 'fetch.lua', keys: 3 },
  cacheopsStore: { file: 'store.lua', keys: undefined },
  cacheopsInvalidate: { file: 'invalidate.lua', keys: undefined },
  cacheopsInvalidateBare: { file: 'invalidate.lua', keys: undefined, bare: true },
  cacheopsBumpEpoch: { file: 'bump_epoch.lua', keys: 1 },
  cacheopsBumpEpochBare: { file: 'bump_epoch.lua', keys: 1, bare: true },
  cacheopsFetchInsideout: { file: 'fetch_insideout.lua', keys: 3 },
  cacheopsStoreInsideout: { file: 'store_insideout.lua', keys: undefined },
  cacheopsInvalidateInsideout: { file: 'invalidate_insideout.lua', keys: undefined },
  cacheopsInvalidateInsideoutBare: { file: 'invalidate_insideout.lua', keys: undefined, bare: true },
  // Stale-while-revalidate: who refreshes a value past its fresh time (read-through.ts).
  cacheopsRefresh: { file: 'refresh.lua', keys: 3 },
  cacheopsRefreshInsideout: { file: 'refresh_insideout.lua', keys: 3 },
  cacheopsReleaseLease: { file: 'release_lease.lua', keys: 1 },
  // The near cache's reads, on its tracked connection (near/tracking.ts).
  cacheopsNearRead: { file: 'near_read.lua', keys: 1 },
  cacheopsNearReadInsideout: { file: 'near_read_insideout.lua', keys: 1 },
  cacheopsReapConjs: { file: 'reap_conjs.lua', keys: undefined },
  // `writes: 'stream'`: transactions announced done without an invalidation (write/stream-wait.ts).
  cacheopsAnnounceDone: { file: 'announce_done.lua', keys: undefined },
  cacheopsAnnounceDoneBare: { file: 'announce_done.lua', keys: undefined, bare: true },
};

type ScriptArg = string | Buffer | number;

/** The script commands as ioredis exposes them once defined. */
export interface ScriptCommands {
  cacheopsFetchBuffer(...args: ScriptArg[]): Promise<Buffer | Buffer[]>;
  cacheopsStore(...args: ScriptArg[]): Promise<number>;
  cacheopsInvalidate(...args: ScriptArg[]): Promise<number>;
  cacheopsInvalidateBare(...args: ScriptArg[]): Promise<number>;
  /** bump_epoch.lua: (epochs key) -> the new "*" epoch. */
  cacheopsBumpEpoch(...args: ScriptArg[]): Promise<number>;
  cacheopsBumpEpochBare(...args: ScriptArg[]): Promise<number>;
  cacheopsFetchInsideoutBuffer(...args: ScriptArg[]): Promise<Buffer | Buffer[]>;
  cacheopsStoreInsideout(...args: ScriptArg[]): Promise<number>;
  cacheopsInvalidateInsideout(...args: ScriptArg[]): Promise<number>;
  cacheopsInvalidateInsideoutBare(...args: ScriptArg[]): Promise<number>;
  /** announce_done.lua: (number of marks, ...marks, ttl ms, channel, ids) -> marks set. */
  cacheopsAnnounceDone(...args: ScriptArg[]): Promise<number>;
  cacheopsAnnounceDoneBare(...args: ScriptArg[]): Promise<number>;
  /** reap_conjs.lua: (number of keys, ...keys, mode) -> [removed, conj set gone]. */
  cacheopsReapConjs(...args: ScriptArg[]): Promise<[number, number]>;
  /** refresh.lua: the value when it changed, else [state, lock state, ...epochs]. */
  cacheopsRefreshBuffer(...args: ScriptArg[]): Promise<Buffer | Buffer[]>;
  cacheopsRefreshInsideoutBuffer(...args: ScriptArg[]): Promise<Buffer | Buffer[]>;
  /** release_lease.lua: (lock key, token) -> 1 when released. */
  cacheopsReleaseLease(...args: ScriptArg[]): Promise<number>;
  /** near_read.lua: (value key) -> [value, pttl] or null. */
  cacheopsNearReadBuffer(...args: ScriptArg[]): Promise<[Buffer, number] | null>;
  /** near_read_insideout.lua: (value key) -> [value, stamps, pttl] or null; the stamps are checked by the caller. */
  cacheopsNearReadInsideoutBuffer(...args: ScriptArg[]): Promise<[Buffer, Buffer, number] | null>;
}

const scriptSources = new Map<string, string>();

/**
 * A script's source with its includes inlined: a line `--- @include "includes/name"`
 * is replaced by lua/includes/name.lua (each file once per script). Shared helpers
 * live there as local functions.
 */
export function scriptSource(file: string): string {
  let src = scriptSources.get(file);
  if (src === undefined) {
    const included = new Set<string>();
    const expand = (name: string): string =>
      readFileSync(join(__dirname, 'lua', name), 'utf8').replace(/^--- @include "([\w/]+)"$/gm, (_line, inc: string) => {
        if (included.has(inc)) return '';
        included.add(inc);
        return expand(`${inc}.lua`);
      });
    src = expand(file);
    scriptSources.set(file, src);
  }
  return src;
}

function isClient(value: unknown): value is RedisClient {
  return value instanceof IORedis || value instanceof Cluster ||
    (typeof value === 'object' && value !== null && typeof (value as { defineCommand?: unknown }).defineCommand === 'function');
}

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster || (client as { isCluster?: boolean }).isCluster === true;
}

/** Where a client connects, for log lines: `127.0.0.1:6379`, `sentinel mymaster (127.0.0.1:26379)`, `cluster 127.0.0.1:7000,...`. */
export function endpointOf(client: RedisClient): string {
  const hostPort = (n: unknown): string => {
    if (typeof n === 'number' || typeof n === 'string') return String(n);
    const o = (n ?? {}) as { host?: string; port?: number };
    return `${o.host ?? 'localhost'}:${o.port ?? 6379}`;
  };
  if (isCluster(client)) {
    const nodes = (client as unknown as { startupNodes?: unknown[] }).startupNodes ?? [];
    return `cluster ${nodes.map(hostPort).join(',')}`;
  }
  const o = (client as { options?: RedisOptions }).options ?? {};
  if (o.sentinels && o.sentinels.length > 0) return `sentinel ${o.name ?? ''} (${o.sentinels.map(hostPort).join(',')})`;
  if (o.path) return o.path;
  return hostPort(o);
}

function fromUnixUrl(url: string, base: RedisOptions): RedisOptions {
  const parsed = new URL(url);
  const db = parsed.searchParams.get('db');
  return { ...base, path: decodeURIComponent(parsed.pathname), ...(db ? { db: Number(db) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}) };
}

/** Whether Sentinel options ask for one of the master's replicas (`role: 'slave'`). */
function connectsToReplica(options: RedisOptions | undefined): boolean {
  return options?.role === 'slave' && Array.isArray(options.sentinels) && options.sentinels.length > 0;
}

/** Whether a cluster client sends read-only commands to replicas (scaleReads other than 'master'). */
function readsReplicas(cluster: Cluster): boolean {
  const scaleReads = (cluster.options as { scaleReads?: unknown }).scaleReads;
  return scaleReads !== undefined && scaleReads !== 'master';
}

/**
 * Opens (or adopts) the client and registers the scripts on it. A cluster
 * client that reads replicas, or a Sentinel client connected to a replica, is
 * not adopted: cacheops reads (and writes) masters through a copy of it
 * (`owned`). Options asking for a replica are an error.
 */
export function connectRedis(config: RedisConfig, defaults: RedisOptions): { client: RedisClient & ScriptCommands; owned: boolean } {
  let client: RedisClient;
  let owned = true;
  if (typeof config === 'string') {
    if (config.startsWith('unix://')) client = new IORedis(fromUnixUrl(config, defaults));
    else if (/^rediss?:\/\//.test(config)) client = new IORedis(config, defaults);
    else throw new CacheopsConfigError('redis', `unsupported URL ${JSON.stringify(config)} (use redis://, rediss:// or unix://)`);
  } else if (isClient(config)) {
    if (isCluster(config) && readsReplicas(config)) {
      // Replication is asynchronous: a replica can still hold what its master's invalidation
      // deleted, so a read sent there after a write could serve the old value. Cacheops reads
      // through a copy of the application's cluster that reads masters (its own, closed by
      // close()); the application's client keeps reading where it chose.
      client = config.duplicate([], { scaleReads: 'master' });
    } else if (!isCluster(config) && connectsToReplica(config.options)) {
      // Sentinel's replica: it refuses cacheops' writes, and may not have the latest invalidation.
      client = config.duplicate({ role: 'master' });
    } else {
      client = config;
      owned = false;
    }
  } else if (typeof config === 'object' && config !== null) {
    if (connectsToReplica(config as RedisOptions)) {
      throw new CacheopsConfigError('redis', "role 'slave' connects to a replica, which refuses cacheops' stores and invalidations and may not "
        + "have the latest invalidation yet: leave role out (Sentinel's master, 'master')");
    }
    client = new IORedis({ ...defaults, ...(config as RedisOptions) });
  } else {
    throw new CacheopsConfigError('redis', 'expected a URL, ioredis options, an ioredis instance or { sentinels, name }');
  }
  return { client: defineScripts(client), owned };
}

/** Registers the scripts of lua/ on a client (once). */
export function defineScripts<C extends RedisClient>(client: C): C & ScriptCommands {
  for (const [name, { file, keys, bare }] of Object.entries(SCRIPTS)) {
    const lua = scriptSource(file);
    if (!(name in client)) client.defineCommand(name, { numberOfKeys: keys, lua: bare ? lua.replace(/^#!.*\n/, '') : lua });
  }
  return client as C & ScriptCommands;
}

/** A page of a SCAN-family command: the next cursor and the elements. */
export type ScanPage = [cursor: string, elements: string[]];

/**
 * Walks a SCAN-family command (SCAN, SSCAN) to its end, never KEYS: `page`
 * gets the elements of each page. A scan answering undefined (a guarded call
 * that failed) or a page returning false ends the walk early. Returns whether
 * it ran to the end.
 */
export async function scanAll(
  scan: (cursor: string) => Promise<ScanPage | undefined>,
  page: (elements: string[]) => Promise<boolean | void> | boolean | void,
): Promise<boolean> {
  let cursor = '0';
  do {
    const reply = await scan(cursor);
    if (!reply) return false;
    cursor = reply[0];
    if ((await page(reply[1])) === false) return false;
  } while (cursor !== '0');
  return true;
}
