/**
 * Redis Sentinel: cacheops connects through { sentinels, name }.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';
import { Sequelize } from 'sequelize';
import { installCacheops } from '../../src/index';
import { startPrivateSentinel } from '../helpers/faults';
import { defineBlog } from '../helpers/models';
import { countSql, uniquePrefix } from '../helpers/env';
import { freePort, startPrivateRedis } from '../helpers/private-redis';


test.serial('sentinel: reads are cached and invalidated through a Sentinel-discovered master', async (t) => {
  const master = await startPrivateRedis();
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-sentinel-'));
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\n`);
  const sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const { Post } = defineBlog(sequelize);
  await sequelize.sync();
  const cacheops = installCacheops(sequelize, {
    redis: { sentinels: [{ host: '127.0.0.1', port }], name: 'mymaster' },
    prefix: uniquePrefix('sentinel'),
    profiles: { Post: { ops: 'all' } },
  });
  try {
    await Post.create({ title: 'a', views: 3 });
    const read = () => Post.findAll({ where: { views: 3 } });
    await read();
    t.is((await countSql(sequelize, read)).sql.length, 0);
    await Post.create({ title: 'b', views: 3 });
    const after = await countSql(sequelize, read);
    t.is(after.sql.length, 1);
    t.is(after.result.length, 2);
  } finally {
    await cacheops.close();
    await sequelize.close();
    sentinel.kill('SIGKILL');
    await master.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial("sentinel: an application's client connected to a replica (role 'slave') is read and written through a copy connected to the master", async (t) => {
  const sentinel = await startPrivateSentinel();
  const app = new IORedis({ sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: sentinel.name, role: 'slave' });
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const { Post } = defineBlog(sequelize);
  await sequelize.sync();
  const replica = new IORedis({ port: sentinel.replica.port });
  const cacheops = installCacheops(sequelize, { redis: app, prefix: uniquePrefix('sentinel-replica'), profiles: { Post: { ops: 'all' } }, logger: () => undefined });
  try {
    // The premise: the application's client is on the replica, which refuses writes.
    await t.throwsAsync(app.set('app:k', '1'), { message: /READONLY/ });
    await Post.create({ title: 'a', views: 3 });
    const read = () => Post.findAll({ where: { views: 3 } });
    await read();
    t.is((await countSql(sequelize, read)).sql.length, 0, 'cached (stored on the master)');
    // The replica's replication held back: a read there would still find the old value.
    await replica.call('CLIENT', 'PAUSE', '3000', 'WRITE');
    await Post.create({ title: 'b', views: 3 });
    const after = await countSql(sequelize, read);
    t.is(after.sql.length, 1, 'invalidated on the master');
    t.is(after.result.length, 2);
    t.false(cacheops.core.store.breaker.open, 'no Redis error met');
  } finally {
    await replica.call('CLIENT', 'UNPAUSE').catch(() => undefined);
    replica.disconnect();
    await cacheops.close();
    t.is(app.status, 'ready', "close() leaves the application's client open");
    app.disconnect();
    await sequelize.close();
    await sentinel.stop();
  }
});
