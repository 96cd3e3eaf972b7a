/**
 * The dog-pile lock as a lease: concurrent misses of one key run the query
 * once; an invalidation voids the lease (the next miss takes it over at once
 * instead of waiting for a fill that would be refused); a holder that died
 * blocks nobody longer than the wait bound, and its lease expires.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { makeBlog } from '../helpers/models';
import { countSql, redisUrl, uniquePrefix } from '../helpers/env';
import { LEASE_TTL_MS, LEASE_WAIT_MS } from '../../src/core/read-through';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test.serial('50 concurrent misses on one key run the query once', async (t) => {
  const blog = await makeBlog('sqlite', __filename, {}, 'lease50');
  try {
    const { Post, sequelize } = blog;
    await Post.bulkCreate([{ title: 'a', views: 5 }, { title: 'b', views: 5 }]);
    const { result, sql } = await countSql(sequelize, () =>
      Promise.all(Array.from({ length: 50 }, () => Post.findAll({ where: { views: 5 }, order: [['id', 'ASC']], cacheops: { lock: true } }))));
    t.is(sql.length, 1, `${sql.length} queries for 50 concurrent misses`);
    t.true(result.every((rows) => rows.map((r) => r.get('title')).join() === 'a,b'));
  } finally {
    await blog.close();
  }
});

test.serial('an invalidation voids the lease: the next miss computes at once, the raced fill is refused', async (t) => {
  const blog = await makeBlog('sqlite', __filename, {}, 'leasevoid');
  try {
    const { Post, cacheops } = blog;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    let calls = 0;
    let holderRead: () => void = () => undefined;
    const readDone = new Promise<void>((resolve) => { holderRead = resolve; });
    const fn = cacheops.cachedAs(Post, { lock: true })(async (label: string) => {
      calls += 1;
      const call = calls;
      const n = await Post.count({ cacheops: false });
      if (call === 1) {
        holderRead();
        await gate; // the first holder is slow: it read before the write
      }
      return `${label}:${n}`;
    });
    const first = fn('x');
    await readDone;
    await Post.create({ title: 'new' }); // invalidates Post: the lease is void
    const started = Date.now();
    t.is(await fn('x'), 'x:1', 'the second miss computed after the write');
    const waited = Date.now() - started;
    t.true(waited < LEASE_WAIT_MS / 2, `it did not wait for the void lease (${waited} ms)`);
    t.is(await fn('x'), 'x:1', 'and its value is cached');
    t.is(calls, 2);
    release();
    t.is(await first, 'x:0', 'the slow holder returns what it read');
    t.is(await fn('x'), 'x:1', 'its fill, which raced the write, was refused');
    t.is(calls, 2);
  } finally {
    await blog.close();
  }
});

test.serial('a killed holder blocks nobody past the wait bound; its lease expires', async (t) => {
  const prefix = uniquePrefix('leasekill');
  const blog = await makeBlog('sqlite', __filename, { prefix }, 'leasekill');
  const holder = spawn(process.execPath, ['--import=tsx', join(__dirname, '..', 'fixtures', 'lease-holder.ts'), redisUrl, prefix], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const { Post, sequelize } = blog;
    await Post.create({ title: 'a', views: 7 });
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on('data', (d: Buffer) => { if (d.toString().includes('holding')) resolve(); });
      holder.on('exit', () => reject(new Error('the holder exited')));
    });
    const leaseTaken = Date.now();
    holder.kill('SIGKILL');
    const read = () => Post.findAll({ where: { views: 7 }, cacheops: { lock: true } });
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 10 }, read));
    const waited = Date.now() - started;
    t.true(results.every((rows) => rows.length === 1), 'every waiter read the database');
    t.true(waited >= LEASE_WAIT_MS - 100 && waited < LEASE_WAIT_MS + 1000, `waiters gave up after the bound (${waited} ms)`);
    // Until the dead lease expires nobody stores; after it, the next miss takes the lease and stores.
    await sleep(Math.max(0, leaseTaken + LEASE_TTL_MS + 100 - Date.now()));
    const after = await countSql(sequelize, read);
    t.is(after.sql.length, 1);
    t.is((await countSql(sequelize, read)).sql.length, 0, 'cached once the dead lease expired');
  } finally {
    holder.kill('SIGKILL');
    await blog.close();
  }
});
