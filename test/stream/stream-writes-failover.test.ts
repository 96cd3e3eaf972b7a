/**
 * `writes: 'stream'` through Redis Cluster failovers, on a private cluster of
 * three masters with one replica each and a private PostgreSQL (logical
 * decoding), and the same with a private MariaDB (binlog): three
 * installations (the first consumes the change stream; the first two write,
 * one writer each on rows of its own; all three read through the cache, three
 * readers each) running while
 *
 *   (a) a replica of the master holding shard 0 (the shard whose script
 *       carries the announcement) takes over by a manual CLUSTER FAILOVER, the
 *       old master demoted and still up;
 *   (b) that shard's master, now the promoted replica, is killed (SIGKILL) and
 *       its replica (the old master) is elected in its place;
 *   (c) a master holding another shard is killed the same way.
 *
 * No read or write throws; each write resolves through the stream ('done'),
 * or once its wait reached the bound by invalidating its model itself, or (the
 * stream counting as late after such a wait) on the synchronous path; after
 * each failover the writes of both writers resolve 'done' again and every
 * installation's reads hit again. A read that started after a write of its
 * row resolved sees it or a later one (each row has one writer, whose values
 * number its writes). Every row holds its last written value at the end, in
 * the database and through each installation.
 *
 * The third installation, which only reads, found stale reads after a killed
 * master in about half the runs while an open breaker skipped invalidations:
 * a write resolved with its invalidation skipped in every shard (its tables
 * dirty in its own process only) while the other installations read from the
 * live masters, or from the promoted replica once their breakers had closed,
 * up to the writer's breaker's back-off ceiling later. An invalidation is now
 * sent while the breaker is open (core/guarded-redis.ts, sendsWhileOpen).
 */
import test, { type ExecutionContext } from 'ava';
import IORedis, { Cluster } from 'ioredis';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
import { epochsKey, namespace } from '../../src/core/keys';
import { installCacheops, type Cacheops } from '../../src/index';
import { keySlot } from '../../src/near/key-slot';
import { STREAM_WAITED_EVENT, type WaitOutcome } from '../../src/write/stream-wait';
import { sleep } from '../helpers/check';
import { dialects, uniquePrefix } from '../helpers/env';
import { startPrivateCluster, type PrivateCluster } from '../helpers/private-cluster';
import { useStreamDatabases } from '../helpers/stream-databases';
import { defineItem } from '../helpers/stream-models';

const withPostgres = dialects().includes('postgres');
const databases = useStreamDatabases('app', { postgres: withPostgres, mariadb: true });
const DB = databases.database;

/** The bound of a write's wait. */
const BOUND_MS = 2000;
/** cacheops' default redisTimeout: what the fallback's invalidation may take at most. */
const REDIS_TIMEOUT_MS = 1000;
/** The breaker's back-off ceiling (docs/operations.md): Redis answering again is seen within it. */
const BREAKER_MAX_DELAY_MS = 5000;
/** A node unreachable this long counts as failed and its replica is elected (Redis's default is 15 s). */
const NODE_TIMEOUT_MS = 1000;
/** Hash-tag shards: with three masters, the invalidations span them. */
const SHARDS = 6;
/** Rows per writer; each installation writes its own. */
const ROWS = 10;
/** Consecutive writes resolved 'done' in each installation that count as recovered. */
const STREAK = 5;


interface Wait { ms: number; outcome: WaitOutcome }

interface App {
  readonly index: number;
  /** Whether this installation writes (each one reads). */
  readonly writes: boolean;
  readonly Item: ModelStatic<Model>;
  readonly cacheops: Cacheops;
  readonly redis: Cluster;
  readonly waits: Wait[];
  close(): Promise<void>;
}

type Db = 'postgres' | 'mariadb';

async function makeApp(db: Db, cluster: PrivateCluster, index: number, writes: boolean, n: { table: string; slot: string; prefix: string }): Promise<App> {
  const sequelize = db === 'mariadb'
    ? new Sequelize(DB, 'root', '', { host: '127.0.0.1', port: databases.maria.port, dialect: 'mysql', logging: false })
    : new Sequelize(DB, 'postgres', '', { host: '127.0.0.1', port: databases.pg.port, dialect: 'postgres', logging: false });
  const Item = defineItem(sequelize, n.table);
  if (index === 0) {
    await Item.sync({ force: true });
    if (db === 'postgres') await sequelize.query(`ALTER TABLE "${n.table}" REPLICA IDENTITY FULL`);
    await Item.bulkCreate(Array.from({ length: 2 * ROWS }, (_, i) => ({ id: i + 1, name: `r${i + 1}`, n: i < ROWS ? 1 : 2 })));
  }
  const redis = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
  redis.on('error', () => undefined);
  const cacheops = installCacheops(sequelize, {
    redis, clusterShards: SHARDS, prefix: n.prefix, profiles: { Item: { ops: 'all' } }, writes: 'stream', redisTimeout: REDIS_TIMEOUT_MS,
    changeStream: db === 'mariadb' ? { handoverMs: 200, writeWaitMs: BOUND_MS } : { slot: n.slot, handoverMs: 200, writeWaitMs: BOUND_MS },
    logger: () => undefined,
  });
  cacheops.on('error', () => undefined); // failed invalidations are reported; the writes must not throw
  const waits: Wait[] = [];
  cacheops.core.events.on(STREAM_WAITED_EVENT, (w: Wait) => waits.push(w));
  await cacheops.changeStreamReady();
  if (db === 'mariadb') {
    await sequelize.databaseVersion(); // the writer learns the server is MariaDB
    await sleep(50);
  }
  return {
    index, writes, Item, cacheops, redis, waits,
    async close() {
      await cacheops.close();
      await sequelize.close();
      redis.disconnect();
    },
  };
}

/** One node's view of the cluster (CLUSTER NODES). */
interface NodeView { id: string; port: number; master: boolean; failed: boolean; masterId: string; slots: [number, number][] }

async function onNode<T>(port: number, call: (node: IORedis) => Promise<T>): Promise<T> {
  const node = new IORedis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: true });
  node.on('error', () => undefined);
  try {
    return await call(node);
  } finally {
    node.disconnect();
  }
}

async function viewOf(port: number): Promise<NodeView[]> {
  const text = String(await onNode(port, (node) => node.call('CLUSTER', 'NODES')));
  return text.trim().split('\n').map((line) => {
    const [id, address, flags, masterId, , , , , ...slots] = line.split(' ');
    const flagList = flags!.split(',');
    return {
      id: id!, port: Number(address!.split('@')[0]!.split(':')[1]), master: flagList.includes('master'),
      failed: flagList.includes('fail'), masterId: masterId!,
      slots: slots.filter((s) => !s.startsWith('[')).map((s) => {
        const [from, to] = s.split('-').map(Number);
        return [from!, to ?? from!] as [number, number];
      }),
    };
  });
}

const roleOf = async (port: number): Promise<unknown[]> => (await onNode(port, (node) => node.call('ROLE'))) as unknown[];

/** The master owning `slot` and its replicas, as a live node sees them. */
async function ownerOf(cluster: PrivateCluster, dead: ReadonlySet<number>, slot: number): Promise<{ master: number; replicas: number[] }> {
  const port = cluster.ports.find((p) => !dead.has(p))!;
  const view = await viewOf(port);
  const master = view.find((v) => v.master && !v.failed && v.slots.some(([a, b]) => slot >= a && slot <= b));
  if (!master) throw new Error(`no master owns slot ${slot}: ${JSON.stringify(view)}`);
  return { master: master.port, replicas: view.filter((v) => !v.master && !v.failed && v.masterId === master.id).map((v) => v.port) };
}

/**
 * Every replica of a live master is linked to it, every live node says the cluster is ok, and
 * they all see the same masters and replicas (gossip spreads a failover's new roles over a few beats).
 */
async function settled(cluster: PrivateCluster, dead: ReadonlySet<number>): Promise<boolean> {
  const live = cluster.ports.filter((p) => !dead.has(p));
  const roles = await Promise.all(live.map(roleOf));
  if (roles.some((r) => r[0] === 'slave' && r[3] !== 'connected')) return false;
  const infos = await Promise.all(live.map((p) => onNode(p, (node) => node.call('CLUSTER', 'INFO'))));
  if (!infos.every((info) => String(info).includes('cluster_state:ok'))) return false;
  const shapes = await Promise.all(live.map(async (p) => (await viewOf(p)).filter((v) => !dead.has(v.port))
    .map((v) => `${v.port}:${v.master ? 'master' : v.masterId}:${v.failed ? 'fail' : ''}`).sort().join()));
  return shapes.every((shape) => shape === shapes[0]) && !shapes[0]!.includes(':fail');
}

async function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what} (${ms} ms)`);
    await sleep(25);
  }
}

interface WriteRecord {
  readonly app: number;
  readonly row: number;
  readonly seq: number;
  readonly started: number;
  resolved: number;
  waits: Wait[];
  /** The writer's breaker when the write resolved: open, its invalidation was skipped. */
  breakerOpen: boolean;
}
interface ReadRecord { readonly app: number; readonly row: number; readonly seq: number; readonly started: number }

/** A value's number: `w<app>-<seq>`; the seeded `r<id>` is -1. */
const seqOf = (name: unknown): number => (typeof name === 'string' && name.startsWith('w') ? Number(name.split('-')[1]) : -1);

interface Load {
  readonly writes: WriteRecord[];
  readonly reads: ReadRecord[];
  readonly errors: string[];
  /** When the reads hit the cache, per installation. */
  readonly hits: number[][];
  /** The longest delay of a 20 ms timer while the load ran (the machine's load, seen by this process). */
  lagMs: number;
  stop(): Promise<void>;
}

/** One writer per installation (its own rows, one write after the other) and three cached readers in each. */
function startLoad(apps: readonly App[]): Load {
  let running = true;
  const load: Load = { writes: [], reads: [], errors: [], hits: apps.map(() => []), lagMs: 0, stop: async () => undefined };
  let tick = performance.now();
  const lag = setInterval(() => {
    const now = performance.now();
    load.lagMs = Math.max(load.lagMs, now - tick - 20);
    tick = now;
  }, 20);
  const onRead = apps.map((app) => (e: { hit: boolean }): void => { if (e.hit) load.hits[app.index]!.push(performance.now()); });
  for (const app of apps) app.cacheops.on('read', onRead[app.index]!);
  const writer = async (app: App): Promise<void> => {
    for (let seq = 0; running; seq += 1) {
      const row = app.index * ROWS + 1 + (seq % ROWS);
      const name = `w${app.index}-${seq}`;
      try {
        const instance = seq % 2 === 1 ? await app.Item.findByPk(row, { cacheops: false } as never) : null;
        const before = app.waits.length;
        const record: WriteRecord = { app: app.index, row, seq, started: performance.now(), resolved: 0, waits: [], breakerOpen: false };
        load.writes.push(record);
        if (instance) {
          instance.set('name', name);
          await instance.save();
        } else {
          await app.Item.update({ name }, { where: { id: row } });
        }
        record.resolved = performance.now();
        record.waits = app.waits.slice(before);
        record.breakerOpen = app.cacheops.core.store.breaker.open;
      } catch (error) {
        load.errors.push(`write ${name}: ${(error as Error).message}`);
      }
      await sleep(5);
    }
  };
  const reader = async (app: App, k: number): Promise<void> => {
    for (let i = k; running; i += 1) {
      const started = performance.now();
      try {
        if (i % 4 === 0) {
          const rows = (await app.Item.findAll({ where: { n: 1 + (i % 8 === 0 ? 0 : 1) }, order: [['id', 'ASC']] } as never)) as unknown as { id: number; name: string }[];
          for (const r of rows) load.reads.push({ app: app.index, row: r.id, seq: seqOf(r.name), started });
        } else {
          const row = 1 + ((i * 7 + k) % (2 * ROWS));
          const found = (await app.Item.findOne({ where: { id: row } } as never)) as unknown as { name: string } | null;
          load.reads.push({ app: app.index, row, seq: found === null ? -2 : seqOf(found.name), started });
        }
      } catch (error) {
        load.errors.push(`read: ${(error as Error).message}`);
      }
      await sleep(2);
    }
  };
  const loops = apps.flatMap((app) => [...(app.writes ? [writer(app)] : []), ...[0, 1, 2].map((k) => reader(app, k))]);
  load.stop = async () => {
    running = false;
    await Promise.all(loops);
    clearInterval(lag);
    for (const app of apps) app.cacheops.off('read', onRead[app.index]!);
  };
  return load;
}

const outcomeOf = (w: WriteRecord): string => (w.waits.length === 0 ? 'sync' : w.waits.map((x) => x.outcome).join('+'));

interface Stale { readonly read: ReadRecord; readonly write: WriteRecord }

/** Reads that started after a write of their row resolved and returned an older value. */
function staleReads(load: Load): Stale[] {
  const byRow = new Map<number, WriteRecord[]>();
  for (const w of load.writes) if (w.resolved > 0) (byRow.get(w.row) ?? byRow.set(w.row, []).get(w.row)!).push(w);
  const stale: Stale[] = [];
  for (const read of load.reads) {
    let newest: WriteRecord | undefined;
    for (const w of byRow.get(read.row) ?? []) if (w.resolved < read.started && w.seq > (newest?.seq ?? -1)) newest = w;
    if (newest && read.seq < newest.seq) stale.push({ read, write: newest });
  }
  return stale;
}

const describeStale = ({ read, write }: Stale): string => `installation ${read.app}, row ${read.row}: read ${read.seq} at ${read.started.toFixed(0)}, `
  + `write ${write.seq} of installation ${write.app} (${outcomeOf(write)}${write.breakerOpen ? ', its breaker open' : ''}) resolved at ${write.resolved.toFixed(0)}`;

/** Each writing installation's last writes since `from` (started after it) resolved 'done', STREAK in a row; each installation's reads hit again. */
function recovered(load: Load, apps: readonly App[], from: number): boolean {
  if (!load.hits.every((hits) => hits.some((at) => at > from))) return false;
  return apps.filter((app) => app.writes).every((app) => {
    const mine = load.writes.filter((w) => w.app === app.index && w.started > from && w.resolved > 0);
    return mine.length >= STREAK && mine.slice(-STREAK).every((w) => w.waits.length === 1 && w.waits[0]!.outcome === 'done');
  });
}

interface Fault { readonly label: string; readonly kill: boolean; inject(): Promise<void> }

async function failovers(t: ExecutionContext, db: Db): Promise<void> {
  const cluster = await startPrivateCluster({ replicas: 1, nodeTimeoutMs: NODE_TIMEOUT_MS });
  const dead = new Set<number>();
  const id = `swf_${db === 'mariadb' ? 'm' : 'p'}`;
  const n = { table: id, slot: `${id}_${process.pid}`, prefix: uniquePrefix(id) };
  const apps: App[] = [];
  let load: Load | undefined;
  try {
    await until('replicas in sync', () => settled(cluster, dead), 20_000);
    apps.push(await makeApp(db, cluster, 0, true, n));
    apps.push(await makeApp(db, cluster, 1, true, n));
    apps.push(await makeApp(db, cluster, 2, false, n));
    t.is(apps[0]!.cacheops.stats().changeStream.role, 'consumer');
    t.is(apps[1]!.cacheops.stats().changeStream.role, 'standby');
    // Every installation speaks to every master before the faults (ioredis connects to a node at its first command).
    await Promise.all(apps.flatMap((app) => app.redis.nodes('master').map((node) => node.ping())));
    const shards = Array.from({ length: SHARDS }, (_, k) => keySlot(epochsKey(namespace(n.prefix, k))));
    const shard0 = shards[0]!;
    const failover = async (kill: boolean, slot: number): Promise<void> => {
      const { master, replicas } = await ownerOf(cluster, dead, slot);
      const replica = replicas[0];
      if (replica === undefined) throw new Error(`no replica of ${master}`);
      if (kill) {
        cluster.kill(cluster.ports.indexOf(master));
        dead.add(master);
      } else {
        await onNode(replica, (node) => node.call('CLUSTER', 'FAILOVER'));
      }
      await until(`${replica} to take over from ${master}`, async () => (await roleOf(replica))[0] === 'master', 20_000);
      await until('the cluster to settle', () => settled(cluster, dead), 20_000);
    };
    const faults: Fault[] = [
      { label: '(a) manual failover of shard 0\'s master', kill: false, inject: () => failover(false, shard0) },
      { label: '(b) shard 0\'s master killed', kill: true, inject: () => failover(true, shard0) },
      {
        label: '(c) another master killed',
        kill: true,
        async inject() {
          // A master holding another shard (so a part of every invalidation), with a replica.
          const { master } = await ownerOf(cluster, dead, shard0);
          const others = await Promise.all(shards.slice(1).map(async (slot) => ({ slot, owner: await ownerOf(cluster, dead, slot) })));
          const victim = others.find((o) => o.owner.master !== master && o.owner.replicas.length > 0);
          if (!victim) throw new Error(`every shard is on ${master}: ${JSON.stringify(others)}`);
          await failover(true, victim.slot);
        },
      },
    ];
    load = startLoad(apps);
    // A baseline: writes resolve through the stream, reads hit (at least 1.5 s, longer on a loaded machine).
    await sleep(1500);
    const baseline = load;
    await until('the baseline', async () => recovered(baseline, apps, 0), 20_000)
      .catch((error: unknown) => t.fail(`${(error as Error).message}: before the faults: ${baseline.writes.map(outcomeOf).join()}`));
    const lines: string[] = [];
    const phases: { fault: Fault; injected: number; completed: number }[] = [];
    for (const fault of faults) {
      const injected = performance.now();
      await fault.inject();
      const completed = performance.now();
      phases.push({ fault, injected, completed });
      // Writes resolve 'done' again: the stream's way back is the breaker's probe, a late stream's probe write (one per bound) and a write's wait.
      const cap = BREAKER_MAX_DELAY_MS + 2 * BOUND_MS + REDIS_TIMEOUT_MS;
      await until(`${fault.label}: writes resolving 'done' again`, async () => recovered(load!, apps, completed), cap)
        .catch((error: unknown) => t.fail(`${(error as Error).message}: ${load!.writes.filter((w) => w.started > injected).map(outcomeOf).join()}`));
      const during = load.writes.filter((w) => w.started > injected && w.resolved > 0);
      const counts = new Map<string, number>();
      for (const w of during) counts.set(outcomeOf(w), (counts.get(outcomeOf(w)) ?? 0) + 1);
      // Back to 'done': the first write of the final streak of 'done' in each installation.
      const doneAgain = apps.filter((app) => app.writes).map((app) => {
        const mine = load!.writes.filter((w) => w.app === app.index && w.started > injected && w.resolved > 0);
        let k = mine.length;
        while (k > 0 && outcomeOf(mine[k - 1]!) === 'done') k -= 1;
        return k < mine.length ? mine[k]!.resolved - injected : Number.NaN;
      });
      const hitsAfter = load.hits.map((hits) => hits.filter((h) => h > completed).length);
      lines.push(`${fault.label} at ${injected.toFixed(0)}: failover ${(completed - injected).toFixed(0)} ms; 'done' again after ${doneAgain.map((d) => d.toFixed(0)).join(' / ')} ms; `
        + `writes ${[...counts].map(([o, c]) => `${c} ${o}`).join(', ')}; ${hitsAfter.join(' / ')} hits since`);
    }
    await load.stop();
    const stale = staleReads(load);
    const timeouts = load.writes.filter((w) => w.waits.some((x) => x.outcome === 'timeout'));
    const done = load.writes.filter((w) => outcomeOf(w) === 'done');
    // What a write costs besides its wait, measured on the writes the stream resolved.
    const overhead = Math.max(0, ...done.map((w) => w.resolved - w.started - w.waits[0]!.ms));
    lines.push(`${load.writes.length} writes (${done.length} done, ${timeouts.length} timeout, ${load.writes.filter((w) => outcomeOf(w) === 'sync').length} sync), `
      + `${load.reads.length} reads checked (${apps.map((app) => load!.reads.filter((r) => r.app === app.index).length).join(' / ')}), ${load.hits.map((h) => h.length).join(' / ')} hits; write overhead beside its wait up to ${overhead.toFixed(0)} ms, synchronous writes up to ${Math.max(0, ...load.writes.filter((w) => outcomeOf(w) === 'sync').map((w) => w.resolved - w.started)).toFixed(0)} ms, timer lag up to ${load.lagMs.toFixed(0)} ms`);
    // Stale reads (none expected), logged by the kill whose window they fall in: the window in which
    // a write resolved with its invalidation not in Redis (its tables dirty in its own process only)
    // lets another installation read what Redis still holds, until the writer's retry (within the
    // breaker's back-off ceiling and a call) or the consumer's lands.
    const reach = BREAKER_MAX_DELAY_MS + REDIS_TIMEOUT_MS + load.lagMs;
    const killOf = (x: Stale): (typeof phases)[number] | undefined => [...phases].reverse().find(({ fault, injected, completed }) => fault.kill
      && x.write.resolved > injected && x.write.resolved < completed + reach && x.read.started < completed + reach);
    for (const phase of phases) {
      const mine = stale.filter((x) => killOf(x) === phase);
      const late = Math.max(...mine.map((x) => x.read.started - phase.completed));
      lines.push(`${phase.fault.label}: ${mine.length} stale reads${mine.length === 0 ? '' : `, the last ${late.toFixed(0)} ms after the failover completed (${mine.filter((x) => x.write.breakerOpen).length} after a write whose breaker was open); ${describeStale(mine[0]!)}`}`);
    }
    t.log(lines.join('\n'));
    t.deepEqual(load.errors, [], 'no read or write threw');
    t.deepEqual(stale.slice(0, 10).map(describeStale), [], `${stale.length} stale reads`);
    t.true(load.reads.length > 1000, `${load.reads.length} reads`);
    for (const w of load.writes) {
      t.true(w.resolved > 0, `write ${w.app}-${w.seq} resolved`);
      t.true(w.waits.length <= 1, `write ${w.app}-${w.seq}: one wait at most (${outcomeOf(w)})`);
      const wait = w.waits[0];
      if (wait === undefined) continue;
      if (wait.outcome === 'done') t.true(wait.ms < BOUND_MS, `write ${w.app}-${w.seq} done after ${wait.ms.toFixed(0)} ms`);
      else {
        // The wait ends at its bound (a timer: late by the timer lag at most), the fallback's invalidation within redisTimeout.
        t.true(wait.ms >= BOUND_MS - 1 && wait.ms <= BOUND_MS + load.lagMs + 50, `write ${w.app}-${w.seq}: waited ${wait.ms.toFixed(0)} ms`);
        const beside = w.resolved - w.started - wait.ms;
        t.true(beside <= overhead + REDIS_TIMEOUT_MS + load.lagMs, `write ${w.app}-${w.seq}: ${beside.toFixed(0)} ms beside its wait`);
      }
    }
    // No write lost: each row holds its writer's last value, in the database and through both caches.
    const last = new Map<number, number>();
    for (const w of load.writes) if (w.resolved > 0) last.set(w.row, Math.max(last.get(w.row) ?? -1, w.seq));
    for (const [row, seq] of last) {
      const truth = (await apps[0]!.Item.findByPk(row, { cacheops: false } as never)) as unknown as { name: string };
      t.is(seqOf(truth.name), seq, `row ${row} in the database`);
      for (const app of apps) {
        for (let i = 0; i < 2; i += 1) {
          const cached = (await app.Item.findOne({ where: { id: row } } as never)) as unknown as { name: string };
          t.is(seqOf(cached.name), seq, `row ${row} through installation ${app.index}`);
        }
      }
    }
  } finally {
    await load?.stop().catch(() => undefined);
    for (const app of apps.reverse()) await app.close().catch(() => undefined);
    if (db === 'postgres') await databases.dropSlot(n.slot).catch(() => undefined);
    await cluster.stop();
  }
}

(databases.withPostgres ? test.serial : test.serial.skip)('PostgreSQL: cluster failovers (manual, then masters killed) under stream writes: never stale, every write resolved, \'done\' again after each', async (t) => {
  await failovers(t, 'postgres');
});

(databases.withMariadb ? test.serial : test.serial.skip)('MariaDB: cluster failovers (manual, then masters killed) under stream writes: never stale, every write resolved, \'done\' again after each', async (t) => {
  await failovers(t, 'mariadb');
});
