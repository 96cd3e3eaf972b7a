/**
 * A full Redis: a private redis-server with maxmemory and the default
 * `noeviction` policy, filled by another client until it answers OOM. For
 * every kind of cached read (query, get, count, cached function, view,
 * fragment, the plain cache), in both degrade modes and in insideout mode: values cached before
 * are still served from Redis, new reads are answered by the database and
 * not stored (counted in `fullStores`), never a reader's error; a write's
 * invalidation still runs (nothing stale afterwards) and the breaker never
 * opens; one log line when Redis fills, one when it has room again, and
 * caching resumes by itself once memory is freed.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nunjucks from 'nunjucks';
import type { Model, ModelStatic } from 'sequelize';
import { CacheMiss, renderAsync, type ReadEvent } from '../../src/index';
import { makeBlog, type Blog } from '../helpers/models';
import { startPrivateRedis } from '../helpers/private-redis';
import { fillRedis, unfillRedis } from '../helpers/faults';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One kind of cached read, by key k; `truth` is what the database says. */
interface Kind {
  readonly name: string;
  read(k: number): Promise<string>;
  truth(k: number): Promise<string>;
}

async function kindsOf(blog: Blog, dir: string): Promise<{ kinds: Kind[]; server: Server }> {
  const { Post, cacheops } = blog;
  const titles = async (k: number): Promise<string> =>
    (await Post.findAll({ where: { views: k }, order: [['id', 'ASC']], cacheops: false } as object)).map((p) => String(p.get('title'))).join(',');
  const fn = cacheops.cachedAs({ model: Post, where: { views: 1 } }, { model: Post, where: { views: 2 } }, { key: 'full-fn' })(async (k: number) => titles(k));
  const view = cacheops.cachedViewAs(Post, { key: 'full-view' })(async (req, res) => {
    const k = Number((req.url ?? '/1').slice(1));
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(await titles(k));
  });
  const server = createServer((req, res) => { void view(req, res); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir));
  cacheops.addNunjucksExtension(env);
  env.addFilter('titles', (k: number, cb: (err: unknown, out?: string) => void) => { titles(k).then((s) => cb(null, s), cb); }, true);
  for (const k of [1, 2]) writeFileSync(join(dir, `f${k}.njk`), `{% cached_as { model: Post, where: { views: ${k} } } %}${k}:{{ ${k} | titles }}{% endcached_as %}`);
  const first = async (k: number): Promise<Model> => (await Post.findOne({ where: { views: k }, order: [['id', 'ASC']], cacheops: false } as object))!;
  const kinds: Kind[] = [
    { name: 'query', read: async (k) => (await Post.findAll({ where: { views: k }, order: [['id', 'ASC']] })).map((p) => String(p.get('title'))).join(','), truth: titles },
    { name: 'get', read: async (k) => String((await Post.findOne({ where: { id: (await first(k)).get('id') as number } }))!.get('title')), truth: async (k) => String((await first(k)).get('title')) },
    { name: 'count', read: async (k) => String(await Post.count({ where: { views: k } })), truth: async (k) => String(await Post.count({ where: { views: k }, cacheops: false } as object)) },
    { name: 'function', read: (k) => fn(k), truth: titles },
    { name: 'view', read: async (k) => (await fetch(`${url}/${k}`)).text(), truth: titles },
    { name: 'fragment', read: (k) => renderAsync(env, `f${k}.njk`, { Post }), truth: async (k) => `${k}:${await titles(k)}` },
  ];
  return { kinds, server };
}

for (const [degradeOnFailure, insideout] of [[true, false], [false, false], [true, true]] as const) {
  test.serial(`a full Redis (noeviction), degradeOnFailure: ${String(degradeOnFailure)}${insideout ? ', insideout' : ''}`, async (t) => {
    const redis = await startPrivateRedis(['--maxmemory', '4mb', '--maxmemory-policy', 'noeviction']);
    const logged: string[] = [];
    const blog = await makeBlog('sqlite', __filename, { redis: redis.url, degradeOnFailure, insideout, redisTimeout: 1000, logger: (m) => logged.push(m) }, 'full');
    const dir = mkdtempSync(join(tmpdir(), 'cacheops-full-'));
    const { kinds, server } = await kindsOf(blog, dir);
    const { Post, cacheops } = blog;
    const events: ReadEvent[] = [];
    cacheops.on('read', (e) => events.push(e));
    /** Reads once; the value and whether the read event said hit. */
    const read = async (kind: Kind, k: number): Promise<{ value: string; hit: boolean }> => {
      const before = events.length;
      const value = await kind.read(k);
      return { value, hit: events.slice(before).some((e) => e.hit) };
    };
    try {
      await Post.bulkCreate([{ title: 'a', views: 1 }, { title: 'b', views: 1 }, { title: 'c', views: 2 }]);
      for (const kind of kinds) {
        await read(kind, 1);
        t.true((await read(kind, 1)).hit, `${kind.name}: cached while Redis has room`);
      }
      await cacheops.cache.set('simple-before', 'kept');

      const filler = await fillRedis(redis.url);
      t.log(`filled with ${filler.length} values of 64 KB`);
      // The first write Redis refuses is a miss's dog-pile lease (taken in the script that looks for the value).
      t.is((await Post.findAll({ where: { views: 2 }, cacheops: { lock: true } } as object)).length, 1);
      t.regex(logged[0] ?? '', /^Redis is full: OOM .*\(a cache read\)/);
      // Counters flushed in a MULTI that Redis aborts (EXECABORT, from OOM): no outage either.
      await cacheops.flushStats();
      for (const kind of kinds) {
        const got = await read(kind, 1);
        t.true(got.hit, `${kind.name}: a value cached before is still served from Redis`);
        t.is(got.value, await kind.truth(1));
      }
      t.is(await cacheops.cache.get('simple-before'), 'kept');
      const fullBefore = cacheops.stats().fullStores;
      for (const kind of kinds) {
        for (let i = 0; i < 2; i += 1) {
          const got = await read(kind, 2);
          t.is(got.value, await kind.truth(2), `${kind.name}: the database answers`);
          t.false(got.hit, `${kind.name}: not stored while Redis is full`);
        }
      }
      await cacheops.cache.set('simple-during', 'x'); // no error, not stored
      await t.throwsAsync(() => cacheops.cache.get('simple-during'), { instanceOf: CacheMiss });
      t.true(cacheops.stats().fullStores > fullBefore, `fullStores counted (${cacheops.stats().fullStores})`);
      t.is(logged.filter((m) => m.startsWith('Redis is full')).length, 1, `one line when it filled: ${logged.join(' | ')}`);

      // Invalidation runs on a full Redis (allow-oom): what was cached is not served stale.
      await Post.update({ title: 'z' }, { where: { views: 1 } });
      await cacheops.invalidateModel(Post as ModelStatic<Model>);
      for (const kind of kinds) t.is(await kind.read(1), await kind.truth(1), `${kind.name}: not stale after a write on a full Redis`);
      const core = cacheops.core;
      t.is(core.store.breaker.outages, 0, 'the breaker never opened');
      t.false(core.outage.bypassing, 'no invalidation failed');
      t.true(core.store.full.isFull());

      await unfillRedis(redis.url, filler);
      await sleep(300); // the first probe interval
      for (let i = 0; i < 20 && core.store.full.isFull(); i += 1) {
        for (const kind of kinds) await read(kind, 2);
        await sleep(100);
      }
      t.false(core.store.full.isFull(), 'room again');
      for (const kind of kinds) {
        await read(kind, 2);
        const got = await read(kind, 2);
        t.true(got.hit, `${kind.name}: caching resumed by itself`);
        t.is(got.value, await kind.truth(2));
      }
      await cacheops.cache.set('simple-after', 'y');
      t.is(await cacheops.cache.get('simple-after'), 'y');
      t.deepEqual(logged.map((m) => m.split(':')[0]), ['Redis is full', 'Redis has room again'], `two log lines: ${logged.join(' | ')}`);
      t.log(logged.join('\n'));
    } finally {
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
      await blog.close().catch(() => undefined);
      await redis.stop();
    }
  });
}

test.serial('the invalidation scripts without their flags line (as sent to a Redis < 7) invalidate the same', async (t) => {
  const blog = await makeBlog('sqlite', __filename, {}, 'bare');
  try {
    const { Post, cacheops, sequelize } = blog;
    (cacheops.core.store as unknown as { shebangless: boolean }).shebangless = true;
    await Post.create({ title: 'a', views: 1 });
    const read = async (): Promise<string> => String((await Post.findAll({ where: { views: 1 } }))[0]!.get('title'));
    await read();
    const sql: string[] = [];
    const opts = (sequelize as unknown as { options: { logging?: unknown } }).options;
    opts.logging = (s: string) => sql.push(s);
    t.is(await read(), 'a');
    t.is(sql.length, 0, 'cached');
    await Post.update({ title: 'b' }, { where: { views: 1 } });
    t.is(await read(), 'b', 'invalidated by the bare script');
    await cacheops.invalidateAll(); // the bare epoch bump
    t.false(cacheops.core.outage.bypassing);
    opts.logging = false;
  } finally {
    await blog.close();
  }
});
