/**
 * The consistency sampler (`verifySampleRate`): sampled hits are re-run
 * against the database after answering; a difference is emitted as `stale`
 * and counted. And the validation of `near` and `verifySampleRate`.
 */
import test from 'ava';
import type { Model } from 'sequelize';
import { CacheopsConfigError, installCacheops, type StaleEvent } from '../../src/index';
import { dialects, makeSequelize, redisUrl, uniquePrefix } from '../helpers/env';
import { makeBlog } from '../helpers/models';
import { nearReady } from '../helpers/near';

for (const dialect of dialects()) {
  for (const near of [true, false]) {
    const tier = near ? 'near' : 'redis';
    test.serial(`${dialect}: at rate 1 every ${tier} hit is checked; a value written behind the cache's back is reported stale`, async (t) => {
      const blog = await makeBlog(dialect, __filename, { verifySampleRate: 1, profiles: { '*': { ops: 'all', near } } }, `sampler${tier}`);
      try {
        const { Post, cacheops } = blog;
        if (near) await nearReady(cacheops);
        const stale: StaleEvent[] = [];
        cacheops.on('stale', (e) => stale.push(e));
        const p = await Post.create({ title: 'first', views: 3 });
        const id = p.get('id') as number;
        for (let i = 0; i < 6; i += 1) {
          await Post.findByPk(id);
          await Post.findAll({ where: { views: 3 } });
          await Post.count({ where: { views: 3 } });
        }
        await cacheops.core.sampler.idle();
        const s = cacheops.stats();
        t.true(s.hits > 0);
        t.is(s.checks, s.hits, 'every hit checked');
        t.is(s.stale, 0);
        if (near) t.true(s.nearHits > 0);
        else t.is(s.nearHits, 0);
        // The database changes without an invalidation: the cache is now stale, and the sampler says so.
        await Post.update({ title: 'changed' }, { where: { id }, cacheops: { invalidate: false } });
        const served = await Post.findByPk(id);
        t.is((served as Model).get('title'), 'first', 'the stale value is still served');
        await cacheops.core.sampler.idle();
        t.is(cacheops.stats().stale, 1);
        t.is(stale.length, 1);
        t.is(stale[0]!.model, Post);
        t.is(typeof stale[0]!.key, 'string');
        t.true(stale[0]!.age >= 0);
        t.is(stale[0]!.tier, tier);
      } finally {
        await blog.close();
      }
    });
  }

  test.serial(`${dialect}: rate 0 checks nothing; reads inside a transaction are never checked`, async (t) => {
    const off = await makeBlog(dialect, __filename, {}, 'sampleroff');
    try {
      const p = await off.Post.create({ title: 'x' });
      for (let i = 0; i < 3; i += 1) await off.Post.findByPk(p.get('id') as number);
      await off.cacheops.core.sampler.idle();
      t.true(off.cacheops.stats().hits > 0);
      t.is(off.cacheops.stats().checks, 0);
    } finally {
      await off.close();
    }
    const on = await makeBlog(dialect, __filename, { verifySampleRate: 1 }, 'samplertx');
    try {
      const p = await on.Post.create({ title: 'x' });
      const id = p.get('id') as number;
      await on.Post.findByPk(id);
      await on.sequelize.transaction(async (transaction) => {
        for (let i = 0; i < 3; i += 1) await on.Post.findByPk(id, { transaction });
      });
      await on.cacheops.core.sampler.idle();
      t.true(on.cacheops.stats().hits >= 3);
      t.is(on.cacheops.stats().checks, 0);
    } finally {
      await on.close();
    }
  });
}

test('near and verifySampleRate are validated at install time', async (t) => {
  const bad: [Record<string, unknown>, string][] = [
    [{ verifySampleRate: 2 }, 'verifySampleRate'],
    [{ verifySampleRate: -0.1 }, 'verifySampleRate'],
    [{ verifySampleRate: '0.5' }, 'verifySampleRate'],
    [{ profiles: { Post: { near: 'yes' } } }, 'profiles.Post.near'],
    [{ profiles: { Post: { near: { maxEntries: 0 } } } }, 'profiles.Post.near.maxEntries'],
    [{ profiles: { Post: { near: { maxBytes: 1.5 } } } }, 'profiles.Post.near.maxBytes'],
    [{ profiles: { Post: { near: { size: 1 } } } }, 'profiles.Post.near.size'],
    [{ defaults: { near: 1 } }, 'defaults.near'],
  ];
  for (const [config, key] of bad) {
    const sequelize = await makeSequelize('sqlite', __filename);
    const error = t.throws(() => installCacheops(sequelize, { redis: redisUrl, prefix: uniquePrefix('cfg'), ...config } as never), { instanceOf: CacheopsConfigError });
    t.is(error?.key, key);
    await sequelize.close();
  }
});
