/**
 * `writes: 'stream'` on a private three-master Redis Cluster and a private
 * PostgreSQL with wal_level=logical: two installations (two Sequelize, two
 * cacheops, each with its own ioredis `Cluster`), both in the stream write
 * mode, exactly one consuming the change stream. The invalidation spreads over
 * several hash-tag shards (clusterShards > 1), so over several masters; the
 * consumer's shard-0 script carries the announcement (marks and PUBLISH), which
 * reaches the other installation's subscriber on whichever node it listens.
 * Every write, in either installation, resolves through the stream ('done',
 * not the bound's fallback), and a cached read in the other installation
 * right after it sees it. The other installation's cluster client is also
 * lazy (`lazyConnect`), and its subscriber connection is killed on every node
 * between writes; a node that refuses new connections sends its subscribers
 * to another node. The same with a private MariaDB and its binlog consumer.
 * MONITOR on every node checks that the script carrying the announcement runs
 * after every other shard's invalidation script of its batch.
 */
import test from 'ava';
import IORedis, { Cluster } from 'ioredis';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
import { namespace, streamDoneKey } from '../../src/core/keys';
import { installCacheops, type Cacheops } from '../../src/index';
import { STREAM_WAITED_EVENT, type WaitOutcome } from '../../src/write/stream-wait';
import { dialects, uniquePrefix } from '../helpers/env';
import { onEachNode, startPrivateCluster, type PrivateCluster } from '../helpers/private-cluster';
import { mariadbUnavailable } from '../helpers/private-mariadb';
import { useStreamDatabases } from '../helpers/stream-databases';
import { defineItem } from '../helpers/stream-models';

const withPostgres = dialects().includes('postgres');
const run = withPostgres ? test.serial : test.serial.skip;
const mariadbMissing = mariadbUnavailable();
const runMariadb = mariadbMissing === undefined ? test.serial : test.serial.skip;
const SHARDS = 6;
const databases = useStreamDatabases('app', { postgres: withPostgres, mariadb: true });
const DB = databases.database;
let cluster: PrivateCluster;

test.serial.before(async () => {
  if (databases.withPostgres || databases.withMariadb) cluster = await startPrivateCluster();
});

test.serial.after.always(async () => {
  await cluster?.stop();
});

interface App {
  readonly Item: ModelStatic<Model>;
  readonly cacheops: Cacheops;
  readonly redis: Cluster;
  readonly waits: { ms: number; outcome: WaitOutcome; id: string }[];
  close(): Promise<void>;
}

async function makeApp(opts: { table: string; slot: string; prefix: string; seed: boolean; lazy?: boolean; mariadb?: boolean }): Promise<App> {
  const sequelize = opts.mariadb === true
    ? new Sequelize(DB, 'root', '', { host: '127.0.0.1', port: databases.maria.port, dialect: 'mysql', logging: false })
    : new Sequelize(DB, 'postgres', '', { host: '127.0.0.1', port: databases.pg.port, dialect: 'postgres', logging: false });
  const Item = defineItem(sequelize, opts.table);
  if (opts.seed) {
    await Item.sync({ force: true });
    if (opts.mariadb !== true) await sequelize.query(`ALTER TABLE "${opts.table}" REPLICA IDENTITY FULL`);
    await Item.bulkCreate(Array.from({ length: 40 }, (_, i) => ({ name: `r${i + 1}`, n: i < 20 ? 1 : 2 })));
  }
  // How an application configures a cluster: its own ioredis Cluster on the startup nodes.
  const redis = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })), opts.lazy === true ? { lazyConnect: true } : {});
  const cacheops = installCacheops(sequelize, {
    redis, clusterShards: SHARDS, prefix: opts.prefix, profiles: { Item: { ops: 'all' } }, writes: 'stream',
    changeStream: opts.mariadb === true ? { handoverMs: 200, writeWaitMs: 3000 } : { slot: opts.slot, handoverMs: 200, writeWaitMs: 3000 }, logger: () => undefined,
  });
  const waits: App['waits'] = [];
  cacheops.core.events.on(STREAM_WAITED_EVENT, (w: App['waits'][number]) => waits.push(w));
  await cacheops.changeStreamReady();
  if (opts.mariadb === true) {
    await sequelize.databaseVersion(); // the writer learns the server is MariaDB
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    Item, cacheops, redis, waits,
    async close() {
      await cacheops.close();
      await sequelize.close();
      redis.disconnect();
    },
  };
}

const nameOf = async (Item: ModelStatic<Model>, id: number): Promise<unknown> =>
  ((await Item.findOne({ where: { id } } as never)) as unknown as { name: string } | null)?.name ?? null;
const countOf = async (Item: ModelStatic<Model>, where: Record<string, unknown>): Promise<number> =>
  Item.count({ where } as never) as unknown as Promise<number>;

/** The masters holding cached values of this prefix (SCAN on each). */
async function mastersWithValues(prefix: string): Promise<number> {
  const holds = await onEachNode(cluster.ports, async (node) => {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}cacheops:{*}:q:*`, 'COUNT', 1000);
      if (keys.length > 0) return true;
      cursor = next;
    } while (cursor !== '0');
    return false;
  });
  return holds.filter(Boolean).length;
}

/**
 * A MONITOR connection to a node. ioredis can take a line of the monitor
 * stream for the answer to its own MONITOR when other clients are busy on the
 * node ("Command queue state error"): such a start is closed and retried
 * (`node.monitor()` would leave the failed connection reconnecting).
 */
async function monitorOf(node: IORedis): Promise<IORedis> {
  for (let attempt = 1; ; attempt += 1) {
    const monitor = node.duplicate({ monitor: true, lazyConnect: false });
    try {
      await new Promise<void>((resolve, reject) => {
        monitor.once('error', reject);
        monitor.once('monitoring', () => resolve());
      });
      return monitor;
    } catch (error) {
      monitor.disconnect();
      if (attempt >= 5) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Kills every pub/sub connection on every node: the subscribers reconnect (on another node, maybe). */
async function killSubscribers(): Promise<void> {
  await onEachNode(cluster.ports, (node) => node.client('KILL', 'TYPE', 'pubsub'));
}

/** Closes both installations, the consumer last (its keys dropped first), and the PostgreSQL slot if any. */
async function closePair(consumer: App, other: App, slot?: string): Promise<void> {
  await other.close();
  await consumer.cacheops.invalidateAll().catch(() => undefined);
  await consumer.close();
  if (slot !== undefined) await databases.dropSlot(slot);
}

interface Check { is(a: unknown, b: unknown, m?: string): void; true(v: boolean, m?: string): void }

/**
 * One write in `writer`, read before (cached) and after in `reader`: the
 * write resolved through the stream, and the reader's first read after it
 * sees it.
 */
async function crossWrite(t: Check, label: string, writer: App, reader: App, read: (app: App) => Promise<unknown>, write: (app: App) => Promise<unknown>, expected: unknown): Promise<void> {
  // The premise: the reader holds the value cached. On a loaded machine a store can be refused
  // (a raced invalidation) or a read can time out (the breaker) right after a node's trouble,
  // so the read is repeated until it hits, for a few seconds.
  let cached = false;
  for (let attempt = 0; attempt < 50 && !cached; attempt += 1) {
    await read(reader);
    const hits = reader.cacheops.stats().hits;
    await read(reader);
    cached = reader.cacheops.stats().hits > hits;
    if (!cached) await new Promise((r) => setTimeout(r, 100));
  }
  t.true(cached, `${label}: the reader's read is cached`);
  const before = writer.waits.length;
  await write(writer);
  const outcomes = writer.waits.slice(before).map((w) => w.outcome);
  t.is(outcomes.join(), 'done', `${label}: resolved by the stream (${writer.waits.slice(before).map((w) => `${w.outcome} ${w.ms.toFixed(0)} ms`).join(', ')})`);
  t.is(await read(reader), expected, `${label}: the other installation's read right after the write`);
}

async function everyKind(t: Check, writer: App, reader: App, side: string, ids: readonly [number, number, number], n: readonly [number, number]): Promise<void> {
  const [a, b, c] = ids;
  await crossWrite(t, `${side} update by pk`, writer, reader, (app) => nameOf(app.Item, a),
    (app) => app.Item.update({ name: `${side}-upd` }, { where: { id: a } }), `${side}-upd`);
  const row = (await writer.Item.findByPk(b, { cacheops: false } as never))!;
  await crossWrite(t, `${side} save`, writer, reader, (app) => nameOf(app.Item, b),
    async () => { row.set('name', `${side}-saved`); await row.save(); }, `${side}-saved`);
  const moved = await countOf(writer.Item, { n: n[0] });
  await crossWrite(t, `${side} mass update`, writer, reader, (app) => countOf(app.Item, { n: n[1] }),
    (app) => app.Item.update({ n: n[1] }, { where: { n: n[0] } }), moved);
  const gone = (await writer.Item.findByPk(c, { cacheops: false } as never))!;
  await crossWrite(t, `${side} destroy`, writer, reader, (app) => nameOf(app.Item, c), () => gone.destroy(), null);
  await crossWrite(t, `${side} create`, writer, reader, (app) => countOf(app.Item, { name: `${side}-new` }),
    (app) => app.Item.create({ name: `${side}-new`, n: 9 }), 1);
}

let counter = 0;
function names(): { table: string; slot: string; prefix: string } {
  counter += 1;
  return { table: `swc_${counter}`, slot: `swc_${counter}_${process.pid}`, prefix: uniquePrefix(`swc${counter}`) };
}

run('two installations on a Redis Cluster: writes in either resolve through the stream and the other reads them', async (t) => {
  const n = names();
  const consumer = await makeApp({ ...n, seed: true });
  const other = await makeApp({ ...n, seed: false, lazy: true });
  try {
    t.is(consumer.cacheops.stats().changeStream.role, 'consumer');
    t.is(other.cacheops.stats().changeStream.role, 'standby');
    await everyKind(t, consumer, other, 'consumer', [1, 2, 3], [1, 3]);
    await everyKind(t, other, consumer, 'other', [4, 5, 6], [3, 4]);
    // The values (and so the invalidations) spread over several masters.
    for (let id = 10; id <= 40; id += 1) await nameOf(other.Item, id);
    t.true(await mastersWithValues(n.prefix) >= 2, 'cached values on several masters');
    // Subscriber connections killed on every node: the next writes still resolve through the stream.
    for (let round = 0; round < 3; round += 1) {
      await killSubscribers();
      await crossWrite(t, `after a kill ${round}`, other, consumer, (app) => nameOf(app.Item, 10 + round),
        (app) => app.Item.update({ name: `k${round}` }, { where: { id: 10 + round } }), `k${round}`);
    }
    const all = [...consumer.waits, ...other.waits];
    const ms = all.map((w) => w.ms).sort((x, y) => x - y);
    t.log(`${all.length} waits, ${all.filter((w) => w.outcome === 'done').length} done; median ${ms[Math.floor(ms.length / 2)]!.toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms`);
  } finally {
    await closePair(consumer, other, n.slot);
  }
});

runMariadb('MariaDB: two installations on a Redis Cluster, writes in either resolve through the binlog consumer and the other reads them', async (t) => {
  const n = names();
  const consumer = await makeApp({ ...n, seed: true, mariadb: true });
  const other = await makeApp({ ...n, seed: false, lazy: true, mariadb: true });
  try {
    t.is(consumer.cacheops.stats().changeStream.role, 'consumer');
    t.is(other.cacheops.stats().changeStream.role, 'standby');
    await everyKind(t, consumer, other, 'consumer', [1, 2, 3], [1, 3]);
    await everyKind(t, other, consumer, 'other', [4, 5, 6], [3, 4]);
    await killSubscribers();
    await crossWrite(t, 'after a kill', other, consumer, (app) => nameOf(app.Item, 10),
      (app) => app.Item.update({ name: 'k' }, { where: { id: 10 } }), 'k');
  } finally {
    await closePair(consumer, other);
  }
});

run('a subscriber whose node refuses it moves to another node, and writes still resolve through the stream', async (t) => {
  const n = names();
  const consumer = await makeApp({ ...n, seed: true });
  const other = await makeApp({ ...n, seed: false });
  const nodes = cluster.ports.map((port) => new IORedis({ host: '127.0.0.1', port }));
  const subscribersOn = async (node: IORedis): Promise<number> => String(await node.call('CLIENT', 'LIST', 'TYPE', 'pubsub')).split('\n').filter((l) => l.trim() !== '').length;
  let refusing: IORedis | undefined;
  try {
    await crossWrite(t, 'before', other, consumer, (app) => nameOf(app.Item, 1), (app) => app.Item.update({ name: 'a' }, { where: { id: 1 } }), 'a');
    // ioredis opens a cluster client's node connections at their first command: a node refusing
    // new connections would leave an installation that never spoke to it unable to read (or cache)
    // the keys of its slots. Every installation speaks to every master first, so the reads that
    // follow are cached wherever their shard lives, and only the subscribers need a new node.
    await Promise.all([consumer, other].flatMap((app) => app.redis.nodes('master').map((node) => node.ping())));
    // A node holding subscribers takes no new connection (as a node gone for good): its subscribers are cut.
    const counts = await Promise.all(nodes.map(subscribersOn));
    const at = counts.findIndex((c) => c > 0);
    t.true(at >= 0, `subscribers per node: ${counts.join()}`);
    refusing = nodes[at]!;
    await refusing.config('SET', 'maxclients', '1');
    await refusing.client('KILL', 'TYPE', 'pubsub');
    let moved = false;
    for (let i = 0; i < 60 && !moved; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
      const now = await Promise.all(nodes.map((node, k) => (k === at ? Promise.resolve(0) : subscribersOn(node))));
      moved = now.reduce((a, b) => a + b, 0) >= counts.reduce((a, b) => a + b, 0);
    }
    t.true(moved, 'every subscriber listens on another node');
    await crossWrite(t, 'after the move', other, consumer, (app) => nameOf(app.Item, 2), (app) => app.Item.update({ name: 'b' }, { where: { id: 2 } }), 'b');
    await crossWrite(t, 'after the move, the other way', consumer, other, (app) => nameOf(app.Item, 3), (app) => app.Item.update({ name: 'c' }, { where: { id: 3 } }), 'c');
  } finally {
    await refusing?.config('SET', 'maxclients', '10000');
    for (const node of nodes) node.disconnect();
    await closePair(consumer, other, n.slot);
  }
});

run('on a cluster the announcement goes out after every shard of its invalidation ran', async (t) => {
  const n = names();
  const consumer = await makeApp({ ...n, seed: true });
  const other = await makeApp({ ...n, seed: false });
  // Every node's MONITOR: when each invalidation script of this prefix ran, and whether it announced.
  const scripts: { at: number; announces: boolean }[] = [];
  const nodes = cluster.ports.map((port) => new IORedis({ host: '127.0.0.1', port }));
  const monitors: IORedis[] = [];
  try {
    for (const node of nodes) monitors.push(await monitorOf(node));
    for (const monitor of monitors) {
      monitor.on('monitor', (time: string, args: string[]) => {
        if (!/^eval/i.test(args[0] ?? '') || !args.some((a) => a.startsWith(`${n.prefix}cacheops:{`) && a.endsWith('}:fence'))) return;
        scripts.push({ at: Number(time), announces: args.includes(`${n.prefix}cacheops:{0}:stream:done:${DB}`) });
      });
    }
    const ROUNDS = 12;
    for (let i = 0; i < ROUNDS; i += 1) {
      const id = 1 + (i % 8);
      await nameOf(consumer.Item, id);
      await other.Item.update({ name: `o${i}` }, { where: { id } });
      t.is(await nameOf(consumer.Item, id), `o${i}`);
    }
    await new Promise((r) => setTimeout(r, 200)); // the last MONITOR lines
    t.is(other.waits.filter((w) => w.outcome === 'done').length, ROUNDS, 'resolved by the stream');
    // One batch per write, one script per shard, the batches one after the other.
    scripts.sort((a, b) => a.at - b.at);
    t.is(scripts.length, ROUNDS * SHARDS, 'one invalidation script per shard and write');
    let early = 0;
    for (let b = 0; b < ROUNDS; b += 1) {
      const batch = scripts.slice(b * SHARDS, (b + 1) * SHARDS);
      t.is(batch.filter((s) => s.announces).length, 1, `batch ${b}: one announcement`);
      if (!batch[SHARDS - 1]!.announces) early += 1;
    }
    t.is(early, 0, `announcements before the last shard's invalidation ran: ${early} of ${ROUNDS}`);
    // The marks are in shard 0's slot, beside its invalidation (one script, one slot).
    const mark = streamDoneKey(namespace(n.prefix, 0), DB, other.waits[other.waits.length - 1]!.id);
    t.is(await other.redis.exists(mark), 1, mark);
  } finally {
    for (const monitor of monitors) monitor.disconnect();
    for (const node of nodes) node.disconnect();
    await closePair(consumer, other, n.slot);
  }
});
