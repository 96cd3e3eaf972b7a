/**
 * Redis failures: with degradeOnFailure the database answers within a
 * bounded time and caching resumes when Redis returns, without serving what
 * was written while it was away (the default); in strict mode
 * (degradeOnFailure: false), a typed error that says how to degrade.
 */
import test from 'ava';
import { makeBlog } from '../helpers/models';
import { countSql } from '../helpers/env';
import { startPrivateRedis } from '../helpers/private-redis';
import IORedis from 'ioredis';
import { CacheopsRedisError } from '../../src/index';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));

test.serial('by default (degradeOnFailure: true) reads fall through while Redis is down, caching resumes after', async (t) => {
  const redis = await startPrivateRedis();
  const logged: string[] = [];
  // No degradeOnFailure given: degrading is the default.
  const blog = await makeBlog('sqlite', __filename, {
    redis: redis.url, redisTimeout: 300, logger: (m) => logged.push(m),
  }, 'degrade');
  try {
    const { Post, sequelize } = blog;
    await Post.create({ title: 'a', views: 1 });
    const read = () => Post.findAll({ where: { views: 1 } });
    await read();
    t.is((await countSql(sequelize, read)).sql.length, 0, 'cached while Redis is up');

    await redis.stop();
    const started = Date.now();
    const down = await countSql(sequelize, read);
    t.is(down.sql.length, 1, 'the database answers');
    t.true(Date.now() - started < 3000, `bounded time (${Date.now() - started} ms)`);
    t.is(down.result.length, 1);
    // A write while Redis is away cannot invalidate now...
    await Post.update({ title: 'b' }, { where: { views: 1 } });
    t.true(logged.length > 0, 'the failure was logged');
    t.regex(logged[0]!, /the database answers reads \(degradeOnFailure: false would make them throw\)/, 'the log line names the strict mode');

    await redis.start(); // a fresh, empty server
    for (let i = 0; i < 50 && blog.cacheops.core.outage.dirtyTables.get(blog.cacheops.core.prefixFor([]))?.size; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
      await blog.cacheops.core.outage.flush();
    }
    const back = await countSql(sequelize, read);
    t.is((back.result[0] as unknown as { title: string }).title, 'b', '...and is never served stale afterwards');
    await read();
    t.is((await countSql(sequelize, read)).sql.length, 0, 'caching resumed');
    t.deepEqual(unhandled, []);
  } finally {
    await blog.close().catch(() => undefined);
    await redis.stop().catch(() => undefined);
  }
});

test.serial('degradeOnFailure: a write whose invalidation failed makes reads bypass the cache until it is retried', async (t) => {
  const redis = await startPrivateRedis();
  const blog = await makeBlog('sqlite', __filename, { redis: redis.url, degradeOnFailure: true, redisTimeout: 300, logger: () => undefined }, 'dirty');
  try {
    const { Post, sequelize, cacheops } = blog;
    await Post.create({ title: 'a', views: 1 });
    const read = () => Post.findAll({ where: { views: 1 } });
    await read();
    // Make invalidation fail while reads still work: the script is replaced by one that errors.
    const core = cacheops.core;
    const client = core.redis as unknown as { cacheopsInvalidate: (...a: unknown[]) => Promise<number> };
    const original = client.cacheopsInvalidate;
    client.cacheopsInvalidate = async () => { throw new Error('invalidation refused'); };
    await Post.update({ title: 'b' }, { where: { views: 1 } });
    const during = await countSql(sequelize, read);
    t.is(during.sql.length, 1, 'reads bypass the cache while an invalidation is pending');
    t.is((during.result[0] as unknown as { title: string }).title, 'b');
    client.cacheopsInvalidate = original;
    // The failure opened the breaker: its probe closes it within about 100 ms, then the retry runs.
    for (let i = 0; i < 40 && (core.store.breaker.open || [...core.outage.dirtyTables.values()].some((d) => d.size > 0)); i += 1) {
      await new Promise((r) => setTimeout(r, 50));
    }
    t.false(core.store.breaker.open, 'the breaker closed again');
    const after = await countSql(sequelize, read);
    t.is((after.result[0] as unknown as { title: string }).title, 'b');
    await read();
    t.is((await countSql(sequelize, read)).sql.length, 0, 'the cache is used again once the retry succeeded');
  } finally {
    await blog.close().catch(() => undefined);
    await redis.stop().catch(() => undefined);
  }
});

test.serial('strict mode (degradeOnFailure: false): a Redis failure is a CacheopsRedisError, bounded in time, that says how to degrade', async (t) => {
  const redis = await startPrivateRedis();
  const logged: string[] = [];
  const blog = await makeBlog('sqlite', __filename, { redis: redis.url, redisTimeout: 300, degradeOnFailure: false, logger: (m) => logged.push(m) }, 'strict');
  try {
    const { Post } = blog;
    await Post.create({ title: 'a', views: 1 });
    await redis.stop();
    const started = Date.now();
    const error = await t.throwsAsync(() => Post.findAll({ where: { views: 1 } }), { instanceOf: CacheopsRedisError });
    t.true(Date.now() - started < 3000);
    t.regex(error!.message, /degradeOnFailure is false \(strict mode\).*set it to true/, error!.message);
    t.regex(logged.join('\n'), /strict mode, degradeOnFailure: false/, 'the log line names the strict mode');
    const again = await t.throwsAsync(() => Post.findAll({ where: { views: 2 } }), { instanceOf: CacheopsRedisError });
    t.regex(again!.message, /unavailable .*degradeOnFailure is false/, 'a read skipped while Redis is out says so too');
  } finally {
    await blog.cacheops.close().catch(() => undefined);
    await blog.sequelize.close();
  }
});

/**
 * A Redis that hangs (no error, no answer) is bounded by redisTimeout too: by
 * ioredis's commandTimeout on the client cacheops opens, by cacheops's own
 * timer on a client the application gives it (which may have none).
 */
for (const kind of ['opened by cacheops', 'given by the application, without commandTimeout'] as const) {
  test.serial(`a hung Redis, client ${kind}: reads fall through within redisTimeout`, async (t) => {
    const redis = await startPrivateRedis();
    const given = kind === 'opened by cacheops' ? undefined : new IORedis(redis.url, { maxRetriesPerRequest: 1 });
    const blog = await makeBlog('sqlite', __filename, {
      redis: given ?? redis.url, degradeOnFailure: true, redisTimeout: 300, logger: () => undefined,
    }, 'hung');
    try {
      const { Post, sequelize } = blog;
      await Post.create({ title: 'a', views: 1 });
      const read = () => Post.findAll({ where: { views: 1 } });
      await read();
      t.is((await countSql(sequelize, read)).sql.length, 0, 'cached while Redis answers');
      redis.pause();
      const started = Date.now();
      const hung = await countSql(sequelize, read);
      const ms = Date.now() - started;
      t.is(hung.sql.length, 1, 'the database answers');
      t.true(ms >= 250 && ms < 2000, `within about redisTimeout (${ms} ms)`);
    } finally {
      redis.resume();
      await blog.cacheops.close().catch(() => undefined);
      await blog.sequelize.close();
      given?.disconnect();
      await redis.stop();
    }
  });
}
