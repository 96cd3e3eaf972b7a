/**
 * noInvalidation (scoped to its async context), the 'read' and 'invalidated'
 * events, and the stats() counters.
 */
import test from 'ava';
import type { Model } from 'sequelize';
import * as api from '../../src/index';
import type { InvalidatedEvent, ReadEvent } from '../../src/index';
import { makeBlog } from '../helpers/models';
import { dialects, rawRedis } from '../helpers/env';
import { sleep, sqlCount } from '../helpers/check';

for (const dialect of dialects()) {
  test.serial(`${dialect}: noInvalidation(fn) turns invalidation off in its async context only`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'noinval');
    try {
      const { Post, sequelize, cacheops } = blog;
      const at = (views: number) => () => Post.findAll({ where: { views } });
      for (const v of [1, 2, 3]) await at(v)();
      t.is(cacheops.noInvalidation(() => 42), 42, 'a sync fn returns its value');

      const returned = await cacheops.noInvalidation(async () => {
        await Post.create({ views: 1 });
        await Post.update({ views: 1 }, { where: { views: 3 } });
        return 'done';
      });
      t.is(returned, 'done');
      t.is(await sqlCount(sequelize, at(1)), 0, 'writes inside did not invalidate (the entry is stale by request)');
      t.is((await at(1)()).length, 0);

      // Concurrent: the fn waits while a write outside it runs; that write must still invalidate.
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      const inside = cacheops.noInvalidation(async () => {
        await gate;
        await Post.create({ views: 3 });
      });
      const outside = (async () => {
        await sleep(5);
        await Post.create({ views: 2 });
        release();
      })();
      await Promise.all([inside, outside]);
      t.is(await sqlCount(sequelize, at(2)), 1, 'the write outside invalidated');
      t.is((await at(2)()).length, 1);
      t.is(await sqlCount(sequelize, at(3)), 0, 'the write inside did not');

      // Afterwards writes invalidate again; the module-level function finds the only installation.
      await Post.create({ views: 3 });
      t.is(await sqlCount(sequelize, at(3)), 1);
      await api.noInvalidation(() => Post.create({ views: 3 }));
      t.is(await sqlCount(sequelize, at(3)), 0);
      await cacheops.invalidateModel(Post);
      t.is((await at(3)()).length, 3, 'the database was written to all along');
      const thrown = await t.throwsAsync(cacheops.noInvalidation(async () => { throw new Error('boom'); }));
      t.is(thrown?.message, 'boom');
      await Post.create({ views: 2 });
      t.is(await sqlCount(sequelize, at(2)), 1, 'a failed fn leaves invalidation on');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: 'read' and 'invalidated' events`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'events');
    try {
      const { Post, Category, cacheops } = blog;
      const reads: ReadEvent[] = [];
      const invalidated: InvalidatedEvent[] = [];
      const onRead = (e: ReadEvent) => reads.push(e);
      const onInvalidated = (e: InvalidatedEvent) => invalidated.push(e);
      t.is(cacheops.on('read', onRead).on('invalidated', onInvalidated), cacheops, 'on() chains');
      const post = await Post.create({ views: 4, title: 'e' });
      t.is(invalidated.length, 1);
      t.is(invalidated[0]!.model, Post);
      t.is(invalidated[0]!.table, 'Posts');
      t.true(Array.isArray(invalidated[0]!.values) && (invalidated[0]!.values as Record<string, unknown>[]).some((v) => v['views'] === 4 && v['title'] === 'e'));

      await Post.findAll({ where: { views: 4 } });
      await Post.findAll({ where: { views: 4 } });
      await Post.count();
      await Post.findByPk(post.get('id') as number);
      await Post.max('views');
      await Category.findAll();
      await Post.findAll({ cacheops: false });
      t.deepEqual(reads.map((e) => [e.model?.name, e.op, e.hit]), [
        ['Post', 'fetch', false], ['Post', 'fetch', true], ['Post', 'count', false], ['Post', 'get', false],
        ['Post', 'aggregate', false], ['Category', 'fetch', false],
      ], 'one event per cache use, none for an uncached read');
      t.deepEqual(reads.map((e) => e.stored), [true, false, true, true, true, true], 'a miss stored its value, a hit did not store');
      t.is(reads[0]!.key, reads[1]!.key, 'the hit reads the key the miss stored');
      const redis = rawRedis();
      try {
        t.is(await redis.exists(...reads.map((e) => e.key)), 6, 'every key named is in Redis (EXISTS counts the shared one twice)');
        await post.update({ views: 5 });
        const left = await Promise.all(reads.map((e) => redis.exists(e.key)));
        t.deepEqual(left, [0, 0, 0, 0, 0, 1], 'the update dropped the reads of Post, not the Category one');
      } finally {
        redis.disconnect();
      }
      const update = invalidated.at(-1)!;
      const values = update.values as Record<string, unknown>[];
      t.true(values.some((v) => v['views'] === 4) && values.some((v) => v['views'] === 5), 'an update reports old and new values');
      await cacheops.invalidateModel(Category);
      t.is(invalidated.at(-1)!.model, Category);
      t.is(invalidated.at(-1)!.values, 'all');
      await cacheops.noInvalidation(() => Post.create({ views: 9 }));
      const count = invalidated.length;
      cacheops.off('read', onRead).off('invalidated', onInvalidated);
      await Post.create({ views: 9 });
      await Post.findAll();
      t.is(invalidated.length, count, 'off() stops the events; noInvalidation emitted none');
      t.is(reads.length, 6);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: stats() counts hits, misses, stores and invalidations`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'stats');
    try {
      const { Post, cacheops } = blog;
      const zero = cacheops.stats();
      t.deepEqual(zero, { ...zero, hits: 0, misses: 0, stores: 0, refusedStores: 0, invalidations: 0, modelInvalidations: 0 });
      const diff = (before: Record<string, number>) => {
        const now = cacheops.stats() as unknown as Record<string, number>;
        // The numeric counters only (changeStream is an object of its own).
        return Object.fromEntries(Object.keys(before).filter((k) => typeof before[k] === 'number')
          .map((k) => [k, now[k]! - before[k]!]).filter(([, v]) => v !== 0));
      };
      const snap = () => ({ ...cacheops.stats() }) as unknown as Record<string, number>;

      let before = snap();
      await Post.findAll({ where: { views: 1 } });
      t.deepEqual(diff(before), { misses: 1, stores: 1 });
      before = snap();
      await Post.findAll({ where: { views: 1 } });
      await Post.findAll({ where: { views: 1 } });
      t.deepEqual(diff(before), { hits: 2 });
      before = snap();
      const row: Model = await Post.create({ views: 1 });
      t.deepEqual(diff(before), { invalidations: 1 });
      before = snap();
      await Post.findAll({ where: { views: 1 } });
      await Post.findAll({ cacheops: false });
      t.deepEqual(diff(before), { misses: 1, stores: 1 });
      before = snap();
      await cacheops.invalidateModel(Post);
      t.deepEqual(diff(before), { invalidations: 1, modelInvalidations: 1 });
      before = snap();
      await row.update({ views: 2 });
      t.deepEqual(diff(before), { invalidations: 1 });
      const copy = cacheops.stats() as { hits: number };
      copy.hits = 1000;
      t.not(cacheops.stats().hits, 1000, 'stats() returns a copy');
    } finally {
      await blog.close();
    }
  });
}
