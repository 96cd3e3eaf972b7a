/**
 * The read gate (src/core/read-gate.ts): after an invalidation failed, no kind of
 * cached read serves what the failed invalidation should have deleted.
 *
 * The scenario: the caches are filled, Redis saves a snapshot and is killed;
 * writes change every cached table while it is away (their invalidations
 * cannot reach it: the tables are marked dirty); Redis restarts from the
 * snapshot, so the values the writes made stale are back in it. The moment it
 * answers again (its "Redis is back" log line, before the retried
 * invalidation has gone out) one read of every kind starts: queries, gets,
 * counts, a get of a `localGet` profile, a query of a `near` profile, a
 * `cachedAs` function and its entry, a view (requests held until then) and a
 * fragment. Each must answer what the database holds, in both degrade modes.
 */
import test from 'ava';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import nunjucks from 'nunjucks';
import IORedis from 'ioredis';
import type { Model, ModelStatic } from 'sequelize';
import { CacheMiss } from '../../src/index';
import { makeBlog, type Blog } from '../helpers/models';
import { startPrivateRedis } from '../helpers/private-redis';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

type Reads = Record<string, () => Promise<unknown>>;

/** Every kind of cached read of the blog, each answering with what it saw of the data. */
function readsOf(blog: Blog, ids: { post: number; author: number }, viewUrl: string, env: nunjucks.Environment): Reads {
  const { Post, Author, Category, cacheops } = blog;
  const titles = async (): Promise<string> => (await Post.findAll({ order: [['id', 'ASC']], cacheops: false } as object)).map((p) => String(p.get('title'))).join(',');
  const fn = cacheops.cachedAs(Post, { key: 'gate-titles' })(titles);
  return {
    'query (findAll)': async () => (await Post.findAll({ where: { views: 1 } })).map((p) => p.get('title')).join(','),
    'get (findByPk)': async () => (await Post.findByPk(ids.post))?.get('title'),
    count: async () => Post.count({ where: { title: 'a' } }),
    localGet: async () => (await Author.findByPk(ids.author))?.get('name'),
    'near tier': async () => (await Category.findAll()).map((c) => c.get('name')).join(','),
    'cachedAs function': fn,
    'cachedAs entry': async () => fn.key().get().catch((e: unknown) => (e instanceof CacheMiss ? 'miss' : Promise.reject(e))),
    view: async () => (await fetch(`${viewUrl}/titles`)).text(),
    fragment: () => new Promise((resolve, reject) => {
      env.renderString('{% cached_as Post %}{{ Post | titles }}{% endcached_as %}', { Post }, (e, r) => (e ? reject(e) : resolve(r)));
    }),
  };
}

for (const degradeOnFailure of [true, false]) {
  test.serial(`degradeOnFailure ${String(degradeOnFailure)}: no kind of read serves what a failed invalidation left in Redis`, async (t) => {
    const redis = await startPrivateRedis();
    let onBack: (() => void) | undefined;
    const blog = await makeBlog('sqlite', __filename, {
      redis: redis.url,
      degradeOnFailure,
      redisTimeout: 500,
      profiles: { Post: { ops: 'all' }, Author: { ops: 'get', localGet: true }, Category: { ops: 'all', near: true } },
      logger: (message) => { if (message.startsWith('Redis is back') && onBack) onBack(); },
    }, 'gate');
    const admin = new IORedis(redis.url, { lazyConnect: true });
    admin.on('error', () => undefined);
    // A view whose requests are held until the hook lets them through, so they reach it at that moment.
    const held: (() => void)[] = [];
    let holding = false;
    const { Post, Author, Category, cacheops } = blog;
    const view = cacheops.cachedViewAs(Post)(async (_req: IncomingMessage, res: ServerResponse) => {
      const rows = await Post.findAll({ order: [['id', 'ASC']], cacheops: false } as object);
      res.end(rows.map((p) => String(p.get('title'))).join(','));
    });
    const server = createServer((req, res) => {
      if (holding) held.push(() => void view(req, res));
      else void view(req, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const viewUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const env = new nunjucks.Environment(undefined, { autoescape: false });
    cacheops.addNunjucksExtension(env);
    env.addFilter('titles', (model: ModelStatic<Model>, cb: (err: unknown, out?: string) => void) => {
      model.findAll({ order: [['id', 'ASC']], cacheops: false } as object).then((rows) => cb(null, rows.map((r) => String(r.get('title'))).join(',')), cb);
    }, true);
    try {
      const post = await Post.create({ title: 'a', views: 1 });
      const author = await Author.create({ name: 'x' });
      await Category.create({ name: 'c' });
      const reads = readsOf(blog, { post: post.get('id') as number, author: author.get('id') as number }, viewUrl, env);
      // Fill every cache (the second round is served from it).
      for (let round = 0; round < 2; round += 1) for (const read of Object.values(reads)) await read();
      const before: Record<string, unknown> = {};
      for (const [kind, read] of Object.entries(reads)) before[kind] = await read();
      t.like(before, { 'query (findAll)': 'a', 'get (findByPk)': 'a', count: 1, localGet: 'x', 'near tier': 'c', 'cachedAs function': 'a', 'cachedAs entry': 'a', view: 'a', fragment: 'a' });

      await admin.connect();
      await admin.save();
      admin.disconnect();
      await redis.stop();
      await until('the breaker to open', () => cacheops.core.store.breaker.open);
      await Post.update({ title: 'b' }, { where: { id: post.get('id') } });
      await Author.update({ name: 'y' }, { where: { id: author.get('id') } });
      await Category.update({ name: 'd' }, { where: {} });
      t.true(cacheops.core.outage.bypassing, 'the invalidations failed: their tables are dirty');

      const started: Record<string, Promise<unknown>> = {};
      holding = true;
      const heldRequest = reads['view']!();
      await until('the view request to be held', () => held.length === 1);
      onBack = () => {
        onBack = undefined;
        for (const [kind, read] of Object.entries(reads)) if (kind !== 'view') started[kind] = read();
        holding = false;
        for (const release of held.splice(0)) release();
        started['view'] = heldRequest;
      };
      await redis.start(); // from the snapshot: the stale values are back in Redis
      await until('Redis to be back', () => onBack === undefined);
      const during: Record<string, unknown> = {};
      for (const [kind, pending] of Object.entries(started)) during[kind] = await pending;
      t.deepEqual(during, {
        'query (findAll)': 'b', 'get (findByPk)': 'b', count: 0, localGet: 'y', 'near tier': 'd',
        'cachedAs function': 'b', 'cachedAs entry': 'miss', view: 'b', fragment: 'b',
      }, 'read the moment Redis is back: nothing stale');

      await until('the dirty tables to be invalidated', () => !cacheops.core.outage.bypassing);
      const after: Record<string, unknown> = {};
      for (const [kind, read] of Object.entries(reads)) if (kind !== 'localGet') after[kind] = await read();
      t.like(after, { 'query (findAll)': 'b', 'get (findByPk)': 'b', count: 0, 'near tier': 'd', 'cachedAs function': 'b', view: 'b', fragment: 'b' }, 'and after the retry');
    } finally {
      server.closeAllConnections();
      server.close();
      admin.disconnect();
      await blog.close().catch(() => undefined);
      await redis.stop().catch(() => undefined);
    }
  });
}

test.serial('a condition consulted by the gate: read-only reads the cache and stores nothing, bypass skips it', async (t) => {
  const blog = await makeBlog('sqlite', __filename, { profiles: { Post: { ops: 'all' } } }, 'gatecond');
  try {
    const { Post, cacheops } = blog;
    await Post.create({ title: 'a', views: 1 });
    let access: 'read-write' | 'read-only' | 'bypass' = 'read-only';
    const remove = cacheops.core.gate.consult(() => access);
    const fn = cacheops.cachedAs(Post, { key: 'gate-cond' })(async () => (await Post.count({ cacheops: false } as object)));
    await Post.findAll();
    await fn();
    const stats0 = cacheops.stats();
    await Post.findAll();
    await fn();
    t.is(cacheops.stats().hits, stats0.hits, 'read-only: nothing was stored, so nothing hits');
    access = 'read-write';
    await Post.findAll();
    await fn();
    const stats1 = cacheops.stats();
    access = 'read-only';
    await Post.findAll();
    await fn();
    t.is(cacheops.stats().hits, stats1.hits + 2, 'read-only: what is stored is read');
    access = 'bypass';
    const stats2 = cacheops.stats();
    await Post.findAll();
    await fn();
    t.is(cacheops.stats().hits + cacheops.stats().misses, stats2.hits + stats2.misses, 'bypass: the cache is not even asked');
    remove();
    await Post.findAll();
    t.is(cacheops.stats().hits, stats2.hits + 1, 'removed: back to normal');
  } finally {
    await blog.close();
  }
});
