/**
 * What the race protection costs in Redis round trips: every command the
 * installation's own connection sends is seen through MONITOR (filtered by
 * that connection's address, so other clients of a shared Redis do not
 * count) and named by script. Expected: a hit is one plain GET; a miss is
 * that GET, one fetch (the epoch snapshot, and the lock when asked) and one
 * store; a write is one invalidation (per shard; a standalone server has
 * one), whatever it touches. With staleWhileRevalidate a fresh hit is still
 * one GET; a stale one adds the refresh script's round trip.
 * On a private Redis Cluster the script calls are counted with INFO
 * commandstats instead (nothing else talks to it).
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import IORedis, { type Cluster } from 'ioredis';
import { Sequelize, type Model } from 'sequelize';
import { installCacheops } from '../../src/index';
import { scriptSource } from '../../src/core/redis';
import { dialects, rawRedis, redisUrl } from '../helpers/env';
import { defineBlog, makeBlog } from '../helpers/models';
import { startPrivateCluster } from '../helpers/private-cluster';
import { readFreshness } from '../../src/core/freshness';

const SCRIPTS = ['fetch', 'store', 'invalidate', 'refresh'] as const;
const bySha = new Map(SCRIPTS.map((name) => {
  const source = scriptSource(`${name}.lua`); // with its includes, as sent to Redis
  return [createHash('sha1').update(source).digest('hex'), name] as const;
}));

/**
 * Watches one connection's commands through MONITOR; `during(fn)` returns
 * what fn made it send, named by script. MONITOR is read from a plain socket
 * (its lines are simple) and filtered by the watched connection's address, so
 * the other clients of a shared Redis do not count.
 */
async function watch(client: IORedis) {
  const info = String(await client.call('CLIENT', 'INFO'));
  const addr = /addr=(\S+)/.exec(info)?.[1];
  if (!addr) throw new Error(`no address in CLIENT INFO: ${info}`);
  const url = new URL(redisUrl);
  const socket = connect({ host: url.hostname, port: Number(url.port || 6379) });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  if (url.password) socket.write(`AUTH ${decodeURIComponent(url.password)}\r\n`);
  socket.write('MONITOR\r\n');
  const marker = rawRedis();
  let seen: string[] = [];
  let waiting: { token: string; resolve: () => void } | undefined;
  let buffer = '';
  socket.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('latin1');
    let end = buffer.indexOf('\r\n');
    for (; end >= 0; end = buffer.indexOf('\r\n')) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      // +<time> [<db> <source>] "<command>" "<first argument>" ...
      const m = /^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]*)"(?: "([^"]*)")?/.exec(line);
      if (!m) continue;
      const [, source, command = '', first = ''] = m;
      if (source === addr) {
        const name = command.toLowerCase();
        seen.push(name === 'evalsha' ? bySha.get(first) ?? 'evalsha(unknown)' : name);
      } else if (waiting && command.toLowerCase() === 'echo' && first === waiting.token) {
        waiting.resolve();
      }
    }
  });
  // MONITOR reports in execution order: once a later command of another client shows, ours have all shown.
  const settle = async (): Promise<void> => {
    const token = randomBytes(6).toString('hex');
    const shown = new Promise<void>((resolve) => { waiting = { token, resolve }; });
    await marker.echo(token);
    await shown;
  };
  await settle();
  return {
    async during(fn: () => Promise<unknown>): Promise<{ commands: string[]; ms: number }> {
      await settle();
      seen = [];
      const started = process.hrtime.bigint();
      await fn();
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      await settle();
      return { commands: seen, ms };
    },
    close(): void {
      socket.destroy();
      marker.disconnect();
    },
  };
}

for (const dialect of dialects()) {
  test.serial(`${dialect}: a hit is 1 round trip, a miss 3, a write 1 per shard`, async (t) => {
    const client = new IORedis(redisUrl);
    const blog = await makeBlog(dialect, __filename, { redis: client }, 'roundtrips');
    const watcher = await watch(client);
    try {
      const { Post, Comment, Tag, sequelize } = blog;
      const [tag] = await Promise.all([Tag.create({ name: 'rt' }), Post.create({ title: 'warm', views: 1 })]);
      await Post.findAll({ where: { views: 1 } }); // scripts loaded before anything is measured
      const post = await Post.create({ title: 'a', views: 5 });
      const id = post.get('id') as number;
      await Comment.create({ postId: id, text: 'c' });

      const cases: [string, () => Promise<unknown>, readonly string[]][] = [
        ['findAll miss', () => Post.findAll({ where: { views: 5 } }), ['get', 'fetch', 'store']],
        ['findAll hit', () => Post.findAll({ where: { views: 5 } }), ['get']],
        ['findByPk miss', () => Post.findByPk(id), ['get', 'fetch', 'store']],
        ['findByPk hit', () => Post.findByPk(id), ['get']],
        ['count miss', () => Post.count({ where: { title: 'a' } }), ['get', 'fetch', 'store']],
        ['count hit', () => Post.count({ where: { title: 'a' } }), ['get']],
        ['include miss', () => Post.findAll({ where: { id }, include: [Comment] }), ['get', 'fetch', 'store']],
        ['include hit', () => Post.findAll({ where: { id }, include: [Comment] }), ['get']],
        ['miss with the dog-pile lock', () => Post.findAll({ where: { views: 6 }, cacheops: { lock: true } }), ['get', 'fetch', 'store']],
        ['instance update', () => post.update({ views: 6 }), ['invalidate']],
        ['Model.update with where', () => Post.update({ published: true }, { where: { views: 6 } }), ['invalidate']],
        ['increment', () => Post.increment('views', { where: { id } }), ['invalidate']],
        ['create', () => Post.create({ title: 'b' }), ['invalidate']],
        ['bulkCreate of 3 rows', () => Comment.bulkCreate([{ postId: id }, { postId: id }, { postId: id }]), ['invalidate']],
        ['Model.destroy with where (3 rows)', () => Comment.destroy({ where: { postId: id, text: null } }), ['invalidate']],
        ['paranoid destroy', () => Post.destroy({ where: { title: 'b' } }), ['invalidate']],
        ['update touching no row', () => Post.update({ views: 1 }, { where: { id: -1 } }), []],
        ['two writes in a transaction (after the commit)', () => sequelize.transaction(async (transaction) => {
          await Post.update({ views: 2 }, { where: { id }, transaction });
          await Comment.update({ text: 'd' }, { where: { postId: id }, transaction });
        }), ['invalidate', 'invalidate']],
        // addTag reads the through rows first (a miss), then inserts.
        ['addTag', () => (post as Model & { addTag(t: Model): Promise<unknown> }).addTag(tag), ['get', 'fetch', 'store', 'invalidate']],
      ];
      const lines: string[] = [];
      for (const [name, fn, expected] of cases) {
        const { commands, ms } = await watcher.during(fn);
        lines.push(`${name.padEnd(48)} ${String(commands.length).padStart(2)} round trip(s): ${commands.join(', ') || '-'} (${ms.toFixed(1)} ms)`);
        t.deepEqual(commands, [...expected], name);
      }
      t.log(`${dialect}:\n${lines.join('\n')}`);
    } finally {
      watcher.close();
      await blog.close();
      client.disconnect();
    }
  });
}

test.serial('staleWhileRevalidate: a fresh hit is still 1 round trip; a stale hit 2; a refresh 3', async (t) => {
  const client = new IORedis(redisUrl);
  const blog = await makeBlog('sqlite', __filename, { redis: client, profiles: { '*': { ops: 'all', timeout: 1, staleWhileRevalidate: 60 } } }, 'rtswr');
  const watcher = await watch(client);
  const raw = rawRedis();
  try {
    const { Post, cacheops } = blog;
    const id = (await Post.create({ title: 'a' })).get('id') as number;
    const read = (): Promise<unknown> => Post.findByPk(id);
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const lines: string[] = [];
    const check = async (name: string, expected: readonly string[]): Promise<void> => {
      const { commands, ms } = await watcher.during(read);
      lines.push(`${name.padEnd(40)} ${commands.length} round trip(s): ${commands.join(', ')} (${ms.toFixed(1)} ms)`);
      t.deepEqual(commands, [...expected], name);
    };
    // Every script loaded (ioredis sends EVAL the first time on a connection) before anything is measured.
    const warm = (await Post.create({ title: 'warm' })).get('id') as number;
    await Post.findByPk(warm);
    await sleep(1050);
    await Post.findByPk(warm);
    const warmKeys = new Set(await raw.keys(`${cacheops.core.prefixFor([])}cacheops:{0}:q:*`));
    await check('miss', ['get', 'fetch', 'store']);
    await check('fresh hit', ['get']);
    await sleep(1050);
    await check('past its timeout: the refresh', ['get', 'refresh', 'store']);
    await check('fresh hit after it', ['get']);
    await sleep(1050);
    // Another caller holds the refresh lease (taken here, outside the measured read).
    const prefix = cacheops.core.prefixFor([]);
    const key = (await raw.keys(`${prefix}cacheops:{0}:q:*`)).find((k) => !warmKeys.has(k))!;
    const hash = key!.slice(key!.lastIndexOf(':q:') + 3);
    const taken = await cacheops.core.store.refresh(prefix, hash, ['Posts'], readFreshness((await raw.getBuffer(key!))!).header!, 5000);
    t.true(taken.kind === 'stale' && !taken.lockHeld);
    await check('stale hit while another refreshes', ['get', 'refresh']);
    t.is(cacheops.stats().staleHits, 1);
    t.log(lines.join('\n'));
  } finally {
    watcher.close();
    raw.disconnect();
    await blog.close();
    client.disconnect();
  }
});

/** EVALSHA and EVAL calls so far, summed over the cluster's masters (INFO commandstats). */
async function scriptCalls(cluster: Cluster): Promise<number> {
  let total = 0;
  for (const node of cluster.nodes('master')) {
    const stats = await node.info('commandstats');
    for (const m of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) total += Number(m[1]);
  }
  return total;
}

test.serial('cluster (12 shards): a hit is no script call (a GET), a miss 2, a write 1 per shard', async (t) => {
  const SHARDS = 12;
  const cluster = await startPrivateCluster();
  const client = cluster.client();
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const { Post } = defineBlog(sequelize);
  await sequelize.sync();
  const cacheops = installCacheops(sequelize, { redis: client, profiles: { '*': { ops: 'all' } }, clusterShards: SHARDS });
  try {
    const post = await Post.create({ title: 'a', views: 1 });
    const count = async (fn: () => Promise<unknown>): Promise<number> => {
      const before = await scriptCalls(client);
      await fn();
      return (await scriptCalls(client)) - before;
    };
    const figures = {
      miss: await count(() => Post.findAll({ where: { views: 1 } })),
      hit: await count(() => Post.findAll({ where: { views: 1 } })),
      'instance update': await count(() => post.update({ views: 2 })),
      'Model.update': await count(() => Post.update({ title: 'b' }, { where: { views: 2 } })),
      create: await count(() => Post.create({ title: 'c' })),
    };
    t.log(`cluster, ${SHARDS} shards: ${Object.entries(figures).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    t.deepEqual(figures, { miss: 2, hit: 0, 'instance update': SHARDS, 'Model.update': SHARDS, create: SHARDS });
  } finally {
    await cacheops.close();
    client.disconnect();
    await sequelize.close();
    await cluster.stop();
  }
});
