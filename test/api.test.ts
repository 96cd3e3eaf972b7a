/**
 * The invalidation API: invalidateObj, invalidateDict (also partial),
 * invalidateModel (other models untouched, no KEYS/SCAN), invalidateAll (only
 * its own prefix), and the module-level functions finding their installation
 * through the model.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import IORedis from 'ioredis';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import * as api from '../src/index';
import { makeBlog, type Blog } from './helpers/models';
import { dialects, rawRedis, redisUrl } from './helpers/env';
import { sleep, sqlCount, valueKeys } from './helpers/check';

type Reads = Record<string, () => Promise<unknown>>;

/** Which reads are cache hits now (each read is left cached afterwards). */
async function hits(sequelize: Sequelize, reads: Reads): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  for (const [name, read] of Object.entries(reads)) out[name] = (await sqlCount(sequelize, read)) === 0;
  return out;
}

/** Caches every read, then checks they are all hits. */
async function prime(t: { true(v: boolean, m?: string): void }, sequelize: Sequelize, reads: Reads): Promise<void> {
  for (const read of Object.values(reads)) await read();
  const now = await hits(sequelize, reads);
  t.true(Object.values(now).every(Boolean), `primed: ${JSON.stringify(now)}`);
}

function postReads(blog: Blog): Reads {
  const { Post, Category } = blog;
  return {
    views1: () => Post.findAll({ where: { views: 1 } }),
    views5: () => Post.findAll({ where: { views: 5 } }),
    views7: () => Post.findAll({ where: { views: 7 } }),
    titleA: () => Post.findAll({ where: { title: 'a' } }),
    titleNull: () => Post.findAll({ where: { title: null } }),
    views1TitleA: () => Post.findOne({ where: { views: 1, title: 'a' } }),
    categories: () => Category.findAll(),
  };
}

for (const dialect of dialects()) {
  test.serial(`${dialect}: invalidateObj invalidates by the instance's current and previous values`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'obj');
    try {
      const { Post, Category, sequelize, cacheops } = blog;
      await Category.create({ name: 'c' });
      const created = await Post.create({ views: 1, title: 'a' });
      await Post.create({ views: 5, title: 'b' });
      const reads = postReads(blog);
      await prime(t, sequelize, reads);
      // A created instance may lack columns the database filled (SQLite, MySQL): those match
      // every value, so the invalidation is at least the granular one.
      await cacheops.invalidateObj(created);
      const afterCreated = await hits(sequelize, reads);
      t.false(afterCreated['views1'] || afterCreated['titleA'] || afterCreated['views1TitleA']);
      t.true(afterCreated['categories']);
      const p1 = (await Post.findByPk(created.get('id') as number, { cacheops: false }))!;
      await cacheops.invalidateObj(p1);
      t.deepEqual(await hits(sequelize, reads), { views1: false, views5: true, views7: true, titleA: false, titleNull: true, views1TitleA: false, categories: true });
      p1.set('views', 7); // not saved: previous 1, current 7
      await prime(t, sequelize, reads);
      await api.invalidateObj(p1);
      t.deepEqual(await hits(sequelize, reads), { views1: false, views5: true, views7: false, titleA: false, titleNull: true, views1TitleA: false, categories: true });
      await t.throwsAsync(cacheops.invalidateObj({} as Model), { instanceOf: api.CacheopsError });
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: invalidateDict, with full and partial values`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'dict');
    try {
      const { Post, Category, sequelize, cacheops } = blog;
      await Category.create({ name: 'c' });
      await Post.create({ views: 1, title: 'a' });
      const reads = postReads(blog);
      await prime(t, sequelize, reads);
      // Post is paranoid: its queries also say deletedAt IS NULL.
      await cacheops.invalidateDict(Post, { views: 1, title: 'a', deletedAt: new Date() });
      t.true(Object.values(await hits(sequelize, reads)).every(Boolean), 'a soft-deleted row affects no paranoid query');
      await cacheops.invalidateDict(Post, { views: 1, title: 'a', deletedAt: null });
      t.deepEqual(await hits(sequelize, reads), { views1: false, views5: true, views7: true, titleA: false, titleNull: true, views1TitleA: false, categories: true });
      await cacheops.invalidateDict(Post, { views: '05', deletedAt: null });
      t.deepEqual(await hits(sequelize, reads), {
        views1: true, views5: false, views7: true, titleA: false, titleNull: false, views1TitleA: false, categories: true,
      }, 'a missing attribute (title) matches every value of it');
      await cacheops.invalidateDict(Post, { title: 'zzz', deletedAt: null });
      t.deepEqual(await hits(sequelize, reads), {
        views1: false, views5: false, views7: false, titleA: true, titleNull: true, views1TitleA: false, categories: true,
      }, 'missing views: every views condition is invalidated, title ones only by their value');
      await cacheops.invalidateDict(Post, {});
      t.deepEqual(await hits(sequelize, reads), {
        views1: false, views5: false, views7: false, titleA: false, titleNull: false, views1TitleA: false, categories: true,
      }, 'no values: the whole model');
      await api.invalidateDict(Post, { title: null });
      t.deepEqual(await hits(sequelize, reads), {
        views1: false, views5: false, views7: false, titleA: false, titleNull: false, views1TitleA: false, categories: true,
      }, 'deletedAt missing: every paranoid query');
      await api.invalidateDict(Post, { title: null, deletedAt: null });
      t.deepEqual(await hits(sequelize, reads), {
        views1: false, views5: false, views7: false, titleA: true, titleNull: false, views1TitleA: false, categories: true,
      });
      await t.throwsAsync(cacheops.invalidateDict(Post, null as never), { instanceOf: api.CacheopsError });
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: invalidateModel drops that model's queries only, without KEYS or SCAN`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'model');
    const monitor = new IORedis(redisUrl, { monitor: true });
    // Around entering and leaving monitor mode, lines in flight are reported as errors: ignore them.
    monitor.on('error', () => undefined);
    while ((monitor.status as string) !== 'monitoring') await sleep(5);
    try {
      const { Post, Category, Author, sequelize, cacheops } = blog;
      const category = await Category.create({ name: 'c' });
      await Post.create({ views: 1, title: 'a', categoryId: category.get('id') });
      await Author.create({ name: 'x' });
      const reads: Reads = {
        ...postReads(blog),
        joined: () => Category.findAll({ include: [Post] }),
        count: () => Post.count(),
        authors: () => Author.findAll(),
      };
      await prime(t, sequelize, reads);
      const prefix = cacheops.core.prefixFor([]);
      const commands: string[][] = [];
      monitor.on('monitor', (_time: string, args: string[]) => commands.push(args));
      await cacheops.invalidateModel(Post);
      await sleep(100); // MONITOR lags a little
      t.deepEqual(await hits(sequelize, reads), {
        views1: false, views5: false, views7: false, titleA: false, titleNull: false, views1TitleA: false, categories: true,
        joined: false, count: false, authors: true,
      });
      const ours = commands.filter((args) => args.some((a) => a.includes(prefix)));
      t.true(ours.length > 0, 'the invalidation was seen by MONITOR');
      // MONITOR sees every client: judge KEYS that could list our keys (by prefix or a leading glob).
      const keysCalls = commands.filter((args) => /^keys$/i.test(args[0] ?? '') && (args[1]?.startsWith(prefix.slice(0, 4)) || /^[*?[]/.test(args[1] ?? '')));
      t.deepEqual(keysCalls, [], 'no KEYS');
      t.deepEqual(ours.filter((args) => /^scan$/i.test(args[0] ?? '')), [], 'no SCAN of our keys');
      await api.invalidateModel(Author);
      t.deepEqual(await hits(sequelize, { authors: reads['authors']!, categories: reads['categories']! }), { authors: false, categories: true });
      await t.throwsAsync(cacheops.invalidateModel({} as ModelStatic<Model>), { instanceOf: api.CacheopsError });
    } finally {
      monitor.disconnect();
      await blog.close();
    }
  });

  test.serial(`${dialect}: invalidateAll drops only its own prefix`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'all');
    const other = await makeBlog(dialect, `${__filename}-other`, {}, 'allother');
    const redis = rawRedis();
    const unrelated = `unrelated:${randomBytes(4).toString('hex')}`;
    try {
      const prefix = blog.cacheops.core.prefixFor([]);
      await blog.Post.create({ views: 1 });
      await other.Post.create({ views: 1 });
      await redis.set(unrelated, 'keep');
      await redis.set(`${prefix}mine-but-not-cacheops`, 'keep');
      await redis.sadd(`${unrelated}:set`, 'keep');
      await prime(t, blog.sequelize, postReads(blog));
      await prime(t, other.sequelize, postReads(other));
      t.true((await valueKeys(prefix)).length >= 7);
      await blog.cacheops.invalidateAll();
      t.deepEqual(await valueKeys(prefix), [], 'every value of this installation is gone');
      t.false(Object.values(await hits(blog.sequelize, postReads(blog))).some(Boolean), 'every read misses');
      t.true(Object.values(await hits(other.sequelize, postReads(other))).every(Boolean), "another installation's cache survives");
      t.is(await redis.get(unrelated), 'keep');
      t.is(await redis.get(`${prefix}mine-but-not-cacheops`), 'keep', 'keys outside the cacheops namespace survive');
      t.deepEqual(await redis.smembers(`${unrelated}:set`), ['keep']);
      t.throws(() => api.noInvalidation(() => 1), { instanceOf: api.CacheopsError }, 'two installations: the module function cannot choose');
      await t.throwsAsync(api.invalidateAll(), { instanceOf: api.CacheopsError });
    } finally {
      await redis.del(unrelated, `${unrelated}:set`, `${blog.cacheops.core.prefixFor([])}mine-but-not-cacheops`);
      redis.disconnect();
      await other.close();
      await blog.close();
    }
  });

  test.serial(`${dialect}: invalidateAll racing reads leaves no value that writes cannot invalidate`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'allrace');
    const redis = rawRedis();
    try {
      const { Post, cacheops } = blog;
      const ns = `${cacheops.core.prefixFor([])}cacheops:{0}:`;
      let stale = 0;
      for (let round = 0; round < 3; round++) {
        // Padding under our prefix makes the SCAN take many pages, so reads store values while it runs.
        const pad = redis.pipeline();
        for (let i = 0; i < 5000; i++) pad.sadd(`${ns}conj:Pad:x=${round}-${i}`, 'v');
        await pad.exec();
        let done = false;
        const seen = new Set<number>();
        const reads = (async () => {
          for (let i = 0; !done || i < 30; i++) {
            const views = round * 1000 + (i % 300);
            seen.add(views);
            await Post.findAll({ where: { views } });
          }
        })();
        await cacheops.invalidateAll();
        done = true;
        await reads;
        // Every value cached now must still be reachable by invalidation.
        for (const views of seen) await Post.create({ views });
        for (const views of seen) if ((await Post.findAll({ where: { views } })).length !== 1) stale += 1;
      }
      t.is(stale, 0, 'no stale read after invalidateAll and the reads settle');
    } finally {
      redis.disconnect();
      await blog.close();
    }
  });

  test.serial(`${dialect}: module-level functions find their installation through the model`, async (t) => {
    const one = await makeBlog(dialect, __filename, {}, 'mod1');
    const two = await makeBlog(dialect, `${__filename}-two`, {}, 'mod2');
    try {
      const p1 = await one.Post.create({ views: 1, title: 'a' });
      const p2 = await two.Post.create({ views: 1, title: 'a' });
      const both = async () => [await hits(one.sequelize, postReads(one)), await hits(two.sequelize, postReads(two))];
      await prime(t, one.sequelize, postReads(one));
      await prime(t, two.sequelize, postReads(two));
      await api.invalidateObj(p2);
      let [h1, h2] = await both();
      t.true(h1!['views1'] && h1!['titleA'], 'the other installation is untouched');
      t.false(h2!['views1'] || h2!['titleA']);
      await api.invalidateDict(one.Post, { views: 1, deletedAt: null });
      [h1, h2] = await both();
      t.false(h1!['views1']);
      t.true(h1!['views5'], JSON.stringify(h1));
      t.true(Object.values(h2!).every(Boolean), JSON.stringify(h2));
      await api.invalidateModel(two.Post);
      [h1, h2] = await both();
      t.true(h1!['views1'] && h1!['titleA']);
      t.false(h2!['views1'] || h2!['titleA']);
      t.true(h2!['categories']);
      await api.invalidateObj(p1);
      [h1] = await both();
      t.false(h1!['views1']);
    } finally {
      await two.close();
      await one.close();
    }
  });
}
