/**
 * Profile options beyond ops and timeout: cacheOnSave, localGet, lock, timeouts.
 */
import test from 'ava';
import { makeBlog } from '../helpers/models';
import IORedis from 'ioredis';
import { countSql, dialects } from '../helpers/env';
import { startPrivateRedis } from '../helpers/private-redis';

for (const dialect of dialects()) {
  test.serial(`${dialect}: cacheOnSave puts a saved instance in the get-cache`, async (t) => {
    const blog = await makeBlog(dialect, __filename, { profiles: { Post: { ops: 'get', cacheOnSave: true }, Author: { ops: 'get', cacheOnSave: 'email' }, '*': {} } }, 'cos');
    try {
      const { Post, Author, sequelize } = blog;
      const p = await Post.create({ title: 'saved', views: 1 });
      const hit = await countSql(sequelize, () => Post.findByPk(p.get('id') as number));
      t.is(hit.sql.length, 0, 'findByPk right after create is a hit');
      t.is((hit.result as unknown as { title: string }).title, 'saved');
      await p.update({ title: 'again' });
      const hit2 = await countSql(sequelize, () => Post.findByPk(p.get('id') as number));
      t.is(hit2.sql.length, 0, 'and after an update');
      t.is((hit2.result as unknown as { title: string }).title, 'again');
      await Author.create({ name: 'ann', email: 'ann@example.com' });
      const byEmail = await countSql(sequelize, () => Author.findOne({ where: { email: 'ann@example.com' } }));
      t.is(byEmail.sql.length, 0, 'cacheOnSave: field name caches the findOne by that field');
    } finally {
      await blog.close();
    }
  });
}

test.serial('localGet serves gets from process memory without Redis (never invalidated, as in the reference)', async (t) => {
  // A private server: its command statistics count only this test's calls.
  const server = await startPrivateRedis();
  const blog = await makeBlog('sqlite', __filename, { redis: server.url, profiles: { Post: { ops: 'get', localGet: true } } }, 'local');
  try {
    const { Post, sequelize, cacheops } = blog;
    const p = await Post.create({ title: 'local', views: 1 });
    await Post.findByPk(p.get('id') as number);
    const redis = new IORedis(server.url);
    const before = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? '0');
    const hit = await countSql(sequelize, () => Post.findByPk(p.get('id') as number));
    const after = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? '0');
    redis.disconnect();
    t.is(hit.sql.length, 0);
    t.is(after - before, 0, 'no Redis call for a local hit');
    t.is(cacheops.stats().hits, 1);
  } finally {
    await blog.close();
    await server.stop();
  }
});

test.serial('lock: concurrent misses of one query run it once', async (t) => {
  const blog = await makeBlog('sqlite', __filename, { profiles: { Post: { ops: 'all', lock: true } } }, 'lock');
  try {
    const { Post, sequelize } = blog;
    await Post.create({ title: 'l', views: 1 });
    const seen: string[] = [];
    (sequelize as unknown as { options: { logging?: unknown } }).options.logging = (sql: string) => { if (sql.includes('SELECT')) seen.push(sql); };
    const results = await Promise.all(Array.from({ length: 8 }, () => Post.findAll({ where: { views: 1 } })));
    (sequelize as unknown as { options: { logging?: unknown } }).options.logging = false;
    t.is(seen.length, 1, `the query ran once for 8 concurrent readers (ran ${seen.length})`);
    t.true(results.every((r) => r.length === 1));
  } finally {
    await blog.close();
  }
});

test.serial('a per-query timeout longer than the profile is honoured, and conj sets outlive their values', async (t) => {
  const blog = await makeBlog('sqlite', __filename, { profiles: { Post: { ops: 'all', timeout: 60 } } }, 'ttl');
  try {
    const { Post, cacheops } = blog;
    await Post.create({ title: 'x', views: 5 });
    await Post.findAll({ where: { views: 5 }, cacheops: { timeout: 5000 } } as never);
    await Post.findAll({ where: { views: 5 }, limit: 1, cacheops: { timeout: 30 } } as never);
    const client = cacheops.core.redis;
    const prefix = cacheops.core.prefixFor([]);
    const values = (await client.keys(`${prefix}cacheops:{0}:q:*`));
    const conj = `${prefix}cacheops:{0}:conj:Posts:deletedAt=N&views=n5`; // paranoid: deletedAt IS NULL is part of the conjunction
    const ttls = await Promise.all(values.map((k) => client.ttl(k)));
    t.true(ttls.some((x) => x > 4000), `a value lives 5000 s (${ttls.join(',')})`);
    const conjTtl = await client.ttl(conj);
    t.true(conjTtl >= Math.max(...ttls), `the conjunction set lives at least as long as every value it guards (${conjTtl} vs ${ttls.join(',')}; ${(await client.keys(`${prefix}*conj*`)).join(' ')})`);
  } finally {
    await blog.close();
  }
});
