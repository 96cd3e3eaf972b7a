/**
 * `cacheops stats`: the keys of the chosen installation by kind, the other
 * prefixes found in the same Redis with their counts, Redis memory and hit
 * counters.
 *
 * Prefixes come from two places: a SCAN of every `*cacheops:*` key (what is
 * really stored, under string prefixes and function prefixes alike) and the
 * `cacheops:prefixes` set, where installations with a prefix function
 * register each prefix it returns (a registered prefix may have no key left).
 *
 * The change stream: what the server says now (who consumes, the bytes it
 * keeps for the stream) and the consumer's `stats().changeStream` as it last
 * flushed it (`cacheops.flushStats()`): the CLI process never consumes.
 */
import { progress, type ProgressSink } from './progress';
import { prefixRegistryKey } from '../core/keys';
import { mayRun } from '../core/permissions';
import type { RedisClient } from '../core/redis';
import { addCounts, countKeysByPrefix, flushedCounters, flushedStream, serverInfo, type FlushedCounters, type FlushedStream, type KeyCounts } from '../ops/stats';
import type { BinlogStreamStatus } from '../stream/mariadb-admin';
import type { StreamStatus } from '../stream/pg-admin';

/** The change stream as the database server shows it now. */
export interface StreamServerView {
  readonly dialect: string;
  /** Who consumes: PostgreSQL's lease holder (a server process), the MariaDB/MySQL Redis lease; null: nobody (the stream is off everywhere). */
  readonly consumer: string | null;
  /** Bytes the server keeps for the stream: WAL the slot retains, binlog after the acknowledged position (null: unknown). */
  readonly retainedBytes: number | null;
  /** What `cacheops stream status` shows. */
  readonly server: StreamStatus | BinlogStreamStatus;
}

export interface StreamReport {
  /** The server's view; undefined when not looked at (--redis, SQLite), or `{ error }` when it could not be. */
  readonly now?: StreamServerView | { readonly error: string };
  /** `stats().changeStream` of the consumer that flushed last; null: none did. */
  readonly flushed: FlushedStream | null;
}

export interface StatsTarget {
  readonly client: RedisClient;
  /** The prefixes to report in detail; undefined: every prefix found. */
  readonly selected: readonly string[] | undefined;
  /** Read the flushed counters from this prefix's stats hash instead of the selected ones' (an app with a prefix function flushes under ''). */
  readonly flushedFrom?: string;
  /** The application's change stream seen from its server (--app with changeStream on PostgreSQL, MariaDB, MySQL). */
  readonly streamServer?: () => Promise<StreamServerView>;
  /** The application has a change stream: its section is shown even before anything was flushed. */
  readonly streamOn?: boolean;
}

export interface PrefixReport {
  readonly prefix: string;
  /** Listed in `cacheops:prefixes` (registered by a prefix function). */
  readonly registered: boolean;
  readonly selected: boolean;
  readonly keys: KeyCounts;
  readonly flushed: FlushedCounters | null;
}

export interface StatsReport {
  /** The single selected prefix, or null when several (or every one) are. */
  readonly prefix: string | null;
  /** The selected prefixes' keys, summed. */
  readonly keys: KeyCounts;
  readonly redis: Awaited<ReturnType<typeof serverInfo>>;
  /** The selected prefixes' flushed counters, summed; null when none was flushed. */
  readonly flushed: FlushedCounters | null;
  /** Every prefix found, sorted. */
  readonly prefixes: readonly PrefixReport[];
  /** null: no change stream configured nor flushed under the prefix. */
  readonly changeStream: StreamReport | null;
}

async function streamReport(t: StatsTarget): Promise<StreamReport | null> {
  const from = t.flushedFrom ?? (t.selected?.length === 1 ? t.selected[0] : undefined);
  const flushed = from === undefined ? null : (await flushedStream(t.client, from)) ?? null;
  if (!t.streamOn && !t.streamServer && flushed === null) return null;
  if (!t.streamServer) return { flushed };
  let now: StreamServerView | { error: string };
  try {
    now = await t.streamServer();
  } catch (error) {
    now = { error: (error as Error).message };
  }
  return { now, flushed };
}

function addFlushed(all: readonly (FlushedCounters | null)[]): FlushedCounters | null {
  const present = all.filter((f): f is FlushedCounters => f !== null);
  if (present.length === 0) return null;
  const sum: FlushedCounters = {};
  for (const f of present) for (const [k, v] of Object.entries(f) as [keyof FlushedCounters, number][]) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}

export async function collectStats(t: StatsTarget, stderr: ProgressSink): Promise<StatsReport> {
  const bar = progress(stderr, { label: 'stats', unit: 'keys', alwaysFinish: false });
  let last = { done: 0, total: 0 };
  const found = await countKeysByPrefix(t.client, 1000, (done, total) => {
    last = { done, total };
    bar.update(last);
  });
  bar.finish(last);
  // A user restricted to one prefix's keys may not read the registry (only prefix functions use it).
  const registry = (await mayRun(t.client, ['smembers', prefixRegistryKey])) !== false;
  const registered = new Set(registry ? await t.client.smembers(prefixRegistryKey) : []);
  const names = new Set([...found.prefixes.keys(), ...registered, ...found.withStats]);
  const selected = new Set(t.selected ?? names);
  const flushedOf = async (prefix: string): Promise<FlushedCounters | null> =>
    (found.withStats.has(prefix) ? (await flushedCounters(t.client, prefix)) ?? null : null);
  const prefixes: PrefixReport[] = [];
  for (const prefix of [...names].sort()) {
    const keys = found.prefixes.get(prefix) ?? addCounts([]);
    prefixes.push({ prefix, registered: registered.has(prefix), selected: selected.has(prefix), keys, flushed: await flushedOf(prefix) });
  }
  const chosen = [...selected];
  const flushed = t.flushedFrom !== undefined ? (await flushedCounters(t.client, t.flushedFrom)) ?? null
    : addFlushed(await Promise.all(chosen.map(flushedOf)));
  return {
    prefix: t.selected?.length === 1 ? t.selected[0]! : null,
    keys: addCounts(chosen.map((p) => found.prefixes.get(p) ?? addCounts([]))),
    redis: await serverInfo(t.client),
    flushed,
    prefixes,
    changeStream: await streamReport(t),
  };
}

const ratio = (hits: number, misses: number): string => (hits + misses > 0 ? `${((100 * hits) / (hits + misses)).toFixed(1)}% hits` : 'no reads');

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

const COLUMNS: readonly [keyof KeyCounts, string][] = [
  ['values', 'values'], ['conj', 'conj'], ['idx', 'idx'], ['schemes', 'schemes'], ['locks', 'locks'],
  ['simple', 'simple'], ['epochs', 'epochs'], ['other', 'other'], ['total', 'total'],
];

/** How many prefixes the text lists (`--json` has them all). */
export const LISTED_PREFIXES = 20;

/**
 * The prefix table: the selected prefixes when some are (--prefix, an
 * application's), else every one; the ones with most keys first, at most
 * LISTED_PREFIXES, then one line for the rest.
 */
function prefixTable(all: readonly PrefixReport[]): string[] {
  const narrowed = all.some((p) => !p.selected);
  const candidates = narrowed ? all.filter((p) => p.selected) : all;
  if (candidates.length === 0) return [`Prefixes found in this Redis: ${all.length}, none of them selected (the selected prefix has no key)`];
  const ranked = [...candidates].sort((a, b) => b.keys.total - a.keys.total || (a.prefix < b.prefix ? -1 : 1));
  const listed = ranked.slice(0, LISTED_PREFIXES);
  const out = [narrowed
    ? `Prefixes found in this Redis: ${all.length}; the ${candidates.length === 1 ? 'selected one' : `${candidates.length} selected`} (r: registered in cacheops:prefixes):`
    : `Prefixes found in this Redis: ${all.length}${listed.length < all.length ? `, the ${listed.length} with most keys listed` : ''} (r: registered in cacheops:prefixes):`];
  const names = listed.map((p) => JSON.stringify(p.prefix));
  const width = Math.max(8, ...names.map((n) => n.length));
  out.push(`    ${'prefix'.padEnd(width)}${COLUMNS.map(([, h]) => h.padStart(9)).join('')}`);
  listed.forEach((p, i) => {
    out.push(`  ${p.registered ? 'r' : ' '} ${names[i]!.padEnd(width)}${COLUMNS.map(([c]) => String(p.keys[c]).padStart(9)).join('')}`);
  });
  const moreListed = candidates.length - listed.length;
  if (moreListed > 0) {
    const keys = ranked.slice(LISTED_PREFIXES).reduce((n, p) => n + p.keys.total, 0);
    out.push(`  ... and ${moreListed} more ${moreListed === 1 ? 'prefix' : 'prefixes'} with ${keys} ${keys === 1 ? 'key' : 'keys'} (--json lists every one)`);
  }
  const others = all.length - candidates.length;
  if (others > 0) out.push(`  (${others} other ${others === 1 ? 'prefix' : 'prefixes'} in this Redis, not counted above; without --prefix they are listed)`);
  return out;
}

const ago = (at: number): string => {
  const s = Math.max(0, Math.round((Date.now() - at) / 1000));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
};

/** The change stream's lines: the server's view now, then the consumer's last flushed figures. */
function streamLines(r: StreamReport): string[] {
  const out: string[] = [];
  const now = r.now;
  if (now === undefined) out.push('Change stream:');
  else if ('error' in now) out.push(`Change stream: the server could not be asked (${now.error})`);
  else {
    out.push(`Change stream (${now.dialect}): ${now.consumer === null ? 'off: no process consumes it' : `consumed (${now.dialect === 'postgres' ? 'server process' : 'lease'} ${now.consumer})`}, `
      + `the server keeps ${now.retainedBytes === null ? 'an unknown amount' : `${humanBytes(now.retainedBytes)} (${now.retainedBytes} bytes)`} for it`);
  }
  const f = r.flushed;
  if (f === null) {
    out.push('  consumer figures: none flushed yet (the consuming process writes them with cacheops.flushStats())');
  } else {
    out.push(`  flushed by the consumer (pid ${f.pid} on ${f.host}, ${ago(f.at)}): role ${f.role}, lag ${f.lagMs === null ? '-' : `${f.lagMs} ms`}, `
      + `retained ${f.retainedBytes === null ? '-' : `${f.retainedBytes} bytes`}, ${f.events} events, ${f.resets} resets`);
  }
  return out;
}

/** The text form of the report. */
export function renderStats(r: StatsReport, describe: string): string {
  const k = r.keys;
  const rows: [string, number][] = [
    ['values (q:)', k.values], ['conj sets (conj:)', k.conj], ['index sets (idx:)', k.idx],
    ['schemes (schemes:)', k.schemes], ['locks (lock:)', k.locks], ['simple cache (simple:)', k.simple],
    ['epochs', k.epochs], ['other', k.other], ['total', k.total],
  ];
  const out = [`cacheops keys (${describe}):`, ...rows.map(([label, n]) => `  ${label.padEnd(24)}${String(n).padStart(10)}`)];

  if (r.prefixes.length === 0) {
    out.push('Prefixes found in this Redis: none (no cacheops key, and nothing in cacheops:prefixes)');
  } else {
    out.push(...prefixTable(r.prefixes));
  }

  out.push(`Redis used memory (whole server): ${humanBytes(r.redis.usedMemory)} (${r.redis.usedMemory} bytes)`);
  out.push(`Redis keyspace hits/misses (whole server, every client and key): ${r.redis.keyspaceHits} / ${r.redis.keyspaceMisses} (${ratio(r.redis.keyspaceHits, r.redis.keyspaceMisses)})`);
  if (r.flushed) {
    const f = (name: keyof FlushedCounters): number => r.flushed?.[name] ?? 0;
    out.push(`cacheops reads flushed by applications (cacheops.flushStats()): ${f('hits')} hits / ${f('misses')} misses (${ratio(f('hits'), f('misses'))}), `
      + `${f('stores')} stores, ${f('refusedStores')} refused stores, ${f('invalidations')} invalidations`);
  } else {
    out.push('cacheops reads flushed by applications: none yet (applications call cacheops.flushStats())');
  }
  if (r.changeStream) out.push(...streamLines(r.changeStream));
  return `${out.join('\n')}\n`;
}
