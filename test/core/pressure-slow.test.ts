/**
 * A slow Redis (answers, but later than the database): detected over a short
 * window, bypassed like an outage in both degrade modes (no read rejects:
 * nothing failed), one log line when it begins and one when it ends, no stale
 * read after a write made meanwhile, caching resumed once it is fast again.
 * The fault matrix measures the same under load; this checks the strict
 * mode, the configuration and the limit's arithmetic.
 */
import test from 'ava';
import { CacheopsConfigError } from '../../src/index';
import { SlowDetector } from '../../src/core/slow';
import { countSql } from '../helpers/env';
import { DelayProxy } from '../helpers/faults';
import { makeBlog } from '../helpers/models';
import { startPrivateRedis } from '../helpers/private-redis';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('the limit: the lower of the threshold and dbFactor x the database median, never below the floor', (t) => {
  const windows: string[] = [];
  const detector = new SlowDetector({ thresholdMs: 100, dbFactor: 2, floorMs: 10, windowMs: 1000 }, (why) => windows.push(why));
  t.is(detector.limit(), 100, 'no database figure yet: the threshold');
  for (let i = 0; i < 10; i += 1) detector.database(20);
  t.is(detector.limit(), 40);
  for (let i = 0; i < 64; i += 1) detector.database(1);
  t.is(detector.limit(), 10, 'the floor');
  t.true(detector.fastAgain([1, 2, 4]));
  t.false(detector.fastAgain([1, 6, 9]), 'under half the limit, not just under it');
  t.deepEqual(windows, []);
});

test('a window is slow when three quarters of its reads are over the limit; within a minute of a slow period, twice the limit', async (t) => {
  const windows: string[] = [];
  const detector = new SlowDetector({ thresholdMs: 100, dbFactor: 0, floorMs: 10, windowMs: 50 }, (why) => windows.push(why));
  const window = async (ms: readonly number[]): Promise<void> => {
    for (const m of ms) detector.cacheRead(m);
    await sleep(60);
    detector.cacheRead(1); // the next read closes the window
  };
  await window([1, 1, 1]);
  await window([150, 150, 150, 1, 1, 1, 1, 1]);
  t.is(windows.length, 0, 'not when only some reads are slow, nor with fewer than five');
  await window([150, 150, 150, 150, 150, 150]); // and the previous window's closing read
  t.is(windows.length, 1);
  t.regex(windows[0]!, /^reads took 150 ms \(median of 7 in .* s, 3\/4 above the limit of 100 ms\)$/);
  detector.ended();
  await window([150, 150, 150, 150, 150]);
  t.is(windows.length, 1, 'damped after a slow period');
  await window([250, 250, 250, 250, 250]);
  t.is(windows.length, 2);
});

test('slowRedis is validated', async (t) => {
  for (const [slowRedis, key] of [[{ thresholdMs: 0 }, 'slowRedis.thresholdMs'], [{ windowMs: '1s' }, 'slowRedis.windowMs'], [{ treshold: 5 }, 'slowRedis.treshold'], [5, 'slowRedis']] as const) {
    const error = await t.throwsAsync(() => makeBlog('sqlite', __filename, { slowRedis: slowRedis as never }, 'slowcfg'), { instanceOf: CacheopsConfigError });
    t.true(error?.message.includes(key), error?.message);
  }
  const blog = await makeBlog('sqlite', __filename, { redisTimeout: 800 }, 'slowcfg');
  try {
    t.deepEqual(blog.cacheops.core.config.slowRedis, { thresholdMs: 400, dbFactor: 2, floorMs: 20, windowMs: 1000 });
  } finally {
    await blog.close();
  }
});

test.serial('without degradeOnFailure a slow Redis is bypassed, not an error; nothing stale; caching resumes', async (t) => {
  const redis = await startPrivateRedis();
  const proxy = new DelayProxy();
  await proxy.start(redis.port);
  const logged: string[] = [];
  const blog = await makeBlog('sqlite', __filename, {
    redis: `redis://127.0.0.1:${proxy.port}`, degradeOnFailure: false, redisTimeout: 1000,
    slowRedis: { windowMs: 600 }, logger: (m) => logged.push(m),
  }, 'slow');
  try {
    const { Post, Tag, sequelize, cacheops } = blog;
    await Post.create({ title: 'a', views: 1 });
    // A table no write of this test invalidates: only invalidateAll can drop what is cached of it.
    await cacheops.noInvalidation(() => Tag.create({ name: 't1' }));
    const tags = async (): Promise<string> => (await Tag.findAll()).map((tag) => String(tag.get('name'))).join(',');
    t.is(await tags(), 't1');
    const read = () => Post.findAll({ where: { views: 1 } });
    for (let i = 0; i < 10; i += 1) await Post.findAll({ where: { views: 2 + i } }); // the database's latency
    await read();
    t.is((await countSql(sequelize, read)).sql.length, 0, 'cached while Redis is fast');

    proxy.delayMs = 40; // 80 ms a call
    for (let i = 0; i < 100 && !blog.cacheops.core.store.breaker.open; i += 1) await read();
    t.true(blog.cacheops.core.store.breaker.open, 'detected');
    t.regex(logged[0] ?? '', /^Redis is slow: reads took \d+ ms/);
    const started = performance.now();
    const bypassed = await countSql(sequelize, read);
    t.true(performance.now() - started < 80, `a read skips Redis (${(performance.now() - started).toFixed(1)} ms)`);
    t.is(bypassed.sql.length, 1, 'the database answers');
    await Post.update({ title: 'b' }, { where: { views: 1 } }); // not an error either
    await blog.cacheops.invalidateModel(Post); // explicit: deferred, not rejected
    await cacheops.noInvalidation(() => Tag.update({ name: 't2' }, { where: {} }));
    await cacheops.invalidateAll(); // skipped while slow: redone when Redis is fast again
    t.is(await tags(), 't2');

    proxy.delayMs = 0;
    for (let i = 0; i < 60 && (blog.cacheops.core.store.breaker.open || blog.cacheops.core.outage.bypassing); i += 1) await sleep(50);
    t.false(blog.cacheops.core.store.breaker.open, 'fast again');
    t.is(String((await read())[0]!.get('title')), 'b', 'not stale');
    t.is(await tags(), 't2', 'invalidateAll was not lost');
    await read();
    t.is((await countSql(sequelize, read)).sql.length, 0, 'caching resumed');
    t.deepEqual(logged.map((m) => m.split(':')[0]), ['Redis is slow', 'Redis is fast again'], logged.join(' | '));
  } finally {
    await blog.close().catch(() => undefined);
    await proxy.stop();
    await redis.stop();
  }
});
