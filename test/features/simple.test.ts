import test from 'ava';
import { CacheMiss, CacheopsConfigError, CacheopsError, CacheopsSerializationError } from '../../src/index';
import { makeBlog, type Blog } from '../helpers/models';
import { rawRedis } from '../helpers/env';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function withBlog(label: string, body: (blog: Blog) => Promise<void>, config = {}): Promise<void> {
  const blog = await makeBlog('sqlite', __filename, config, label);
  try {
    await body(blog);
  } finally {
    await blog.close();
  }
}

test('cache.get/set/delete; get of a missing key throws CacheMiss', async (t) => {
  await withBlog('simple', async ({ cacheops }) => {
    const { cache } = cacheops;
    const miss = await t.throwsAsync(cache.get('absent'), { instanceOf: CacheMiss });
    t.true(miss instanceof CacheopsError);
    t.regex(miss!.message, /absent/);
    await cache.set('k', { list: [1, 'a', null], when: new Date(0), big: 10n ** 20n, tags: new Set(['x']) }, 60);
    const back = await cache.get<{ list: unknown[]; when: Date; big: bigint; tags: Set<string> }>('k');
    t.deepEqual(back.list, [1, 'a', null]);
    t.is(back.when.getTime(), 0);
    t.is(back.big, 10n ** 20n);
    t.deepEqual([...back.tags], ['x']);
    await cache.set('k', 'second');
    t.is(await cache.get('k'), 'second');
    t.true(await cache.delete('k'));
    t.false(await cache.delete('k'));
    await t.throwsAsync(cache.get('k'), { instanceOf: CacheMiss });
  });
});

test('values live under the installation\'s prefix with the given timeout', async (t) => {
  await withBlog('simpleprefix', async ({ cacheops }) => {
    const prefix = cacheops.core.config.prefix as string;
    await cacheops.cache.set('ttl', 1, 300);
    const redis = rawRedis();
    try {
      const ttl = await redis.ttl(`${prefix}cacheops:{0}:simple:ttl`);
      t.true(ttl > 290 && ttl <= 300, `ttl ${ttl}`);
      await cacheops.cache.set('default', 1);
      t.true(await redis.ttl(`${prefix}cacheops:{0}:simple:default`) > 3500, 'default timeout 3600');
    } finally {
      redis.disconnect();
    }
    await withBlog('simpleother', async ({ cacheops: other }) => {
      await t.throwsAsync(other.cache.get('ttl'), { instanceOf: CacheMiss }, 'another prefix does not see it');
    });
  });
});

test('expiry: a 1 s timeout is gone after it', async (t) => {
  await withBlog('simpleexp', async ({ cacheops }) => {
    await cacheops.cache.set('short', 'v', 1);
    const redis = rawRedis();
    try {
      const pttl = await redis.pttl(`${cacheops.core.config.prefix as string}cacheops:{0}:simple:short`);
      t.true(pttl > 0 && pttl <= 1000, `stored for 1 s (pttl ${pttl})`);
    } finally {
      redis.disconnect();
    }
    await sleep(1500);
    await t.throwsAsync(cacheops.cache.get('short'), { instanceOf: CacheMiss });
  });
});

test('bad timeouts and keys throw; unserializable values store nothing', async (t) => {
  await withBlog('simplebad', async ({ cacheops }) => {
    const { cache } = cacheops;
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5', null]) {
      const error = await t.throwsAsync(cache.set('k', 1, bad as never), { instanceOf: CacheopsConfigError });
      t.is(error!.key, 'timeout');
    }
    await t.throwsAsync(cache.get('k'), { instanceOf: CacheMiss }, 'nothing stored by a bad timeout');
    await t.throwsAsync(cache.set('', 1), { instanceOf: CacheopsError, message: /non-empty/ });
    await t.throwsAsync(cache.get(42 as never), { instanceOf: CacheopsError });
    await t.throwsAsync(cache.set('fn', () => 1), { instanceOf: CacheopsSerializationError });
    await t.throwsAsync(cache.set('sym', { s: Symbol('x') }), { instanceOf: CacheopsSerializationError });
    await t.throwsAsync(cache.get('fn'), { instanceOf: CacheMiss });
  });
});

test('enabled: false makes the cache a no-op', async (t) => {
  await withBlog('simpleoff', async ({ cacheops }) => {
    await cacheops.cache.set('k', 1);
    await t.throwsAsync(cacheops.cache.get('k'), { instanceOf: CacheMiss });
    t.false(await cacheops.cache.delete('k'));
  }, { enabled: false });
});
