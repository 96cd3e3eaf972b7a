/**
 * `writes: 'stream'`: the change stream's invalidation tells the writers of
 * other processes that their transactions were invalidated, in the same Lua
 * script (lua/includes/announce.lua): one round trip, and no announcement
 * without its invalidation. A Redis user who may not publish on the channel
 * keeps a working invalidation (the writers then wait out their bound and
 * invalidate their tables themselves), and the start-up check names what is
 * missing. On a private redis-server with ACL users.
 */
import test from 'ava';
import IORedis from 'ioredis';
import { DataTypes, Sequelize, type ModelStatic, type Model } from 'sequelize';
import { installCacheops, type Cacheops } from '../../src/index';
import type { DoneAnnouncement } from '../../src/core/cache-store';
import type { CacheopsCore } from '../../src/core/cacheops-core';
import { namespace, streamDoneChannel, streamDoneKey } from '../../src/core/keys';
import { aclRules, checkPermissions } from '../../src/core/permissions';
import { countSql } from '../helpers/env';
import { useAclRedis } from '../helpers/acl-redis';

const PREFIX = 'announce:';
const server = useAclRedis();

interface App { readonly sequelize: Sequelize; readonly cacheops: Cacheops; readonly core: CacheopsCore; readonly Item: ModelStatic<Model> }

async function openApp(url: string, insideout: boolean, prefix: string | ((q: { tables: readonly string[] }) => string) = PREFIX): Promise<App> {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const Item = sequelize.define('Item', { name: DataTypes.STRING }, { tableName: 'items', timestamps: false });
  await sequelize.sync();
  await Item.bulkCreate([{ name: 'a' }, { name: 'b' }]);
  const cacheops = installCacheops(sequelize, { redis: url, prefix, insideout, profiles: { Item: { ops: 'all' } }, logger: () => undefined });
  await cacheops.ready();
  return { sequelize, cacheops, core: (cacheops as unknown as { core: CacheopsCore }).core, Item };
}

function announcement(core: CacheopsCore, ids: readonly string[]): DoneAnnouncement {
  const ns = namespace(PREFIX, 0);
  return { ns, marks: ids.map((id) => streamDoneKey(ns, core.db, id)), ttlMs: 60_000, channel: streamDoneChannel(ns, core.db), ids: ids.join(',') };
}

/** Messages on a channel, listened to as the admin. */
async function listen(channel: string): Promise<{ messages: string[]; close: () => void }> {
  const sub = new IORedis(server.redis.url);
  const messages: string[] = [];
  sub.on('message', (_c: string, m: string) => messages.push(m));
  await sub.subscribe(channel);
  return { messages, close: () => sub.disconnect() };
}

/** Scripts Redis ran so far (EVALSHA and EVAL calls, every user). */
async function scriptCalls(): Promise<number> {
  const info = await server.admin.info('commandstats');
  let calls = 0;
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(m[1]);
  return calls;
}

/** Whether a findAll of row 1 is answered from the cache (no SQL). */
async function cached(app: App): Promise<boolean> {
  return (await countSql(app.sequelize, () => app.Item.findAll({ where: { id: 1 } }))).sql.length === 0;
}

for (const insideout of [false, true]) {
  const mode = insideout ? 'insideout' : 'conj sets';
  test.serial(`${mode}: the invalidation announces its transactions in its own script; one who may not publish still invalidates`, async (t) => {
    const users = [
      { name: 'full', rules: aclRules({ prefix: PREFIX, streamWrites: true }), publishes: true },
      { name: 'nopublish', rules: aclRules({ prefix: PREFIX }), publishes: false },
    ];
    for (const user of users) {
      const app = await openApp(await server.createUser(user.name, user.rules), insideout);
      const done = announcement(app.core, ['41', '42']);
      const heard = await listen(done.channel);
      try {
        await app.Item.findAll({ where: { id: 1 } });
        t.true(await cached(app), `${user.name}: the read is cached`);
        const scriptsBefore = await scriptCalls();
        t.true(await app.core.invalidateNow([{ model: app.Item, table: 'items', rows: [{ id: 1, name: 'a' }] }], done), `${user.name}: the invalidation arrived`);
        t.is(await scriptCalls() - scriptsBefore, 1, `${user.name}: the invalidation and its announcement are one script`);
        t.false(await cached(app), `${user.name}: the value was invalidated`);
        const marks = await server.admin.mget(...done.marks);
        t.deepEqual(marks, ['1', '1'], `${user.name}: both transactions marked`);
        t.true(Number(await server.admin.pttl(done.marks[0]!)) > 0, 'the marks expire');
        await new Promise((r) => setTimeout(r, 200));
        if (user.publishes) {
          t.deepEqual(heard.messages, ['41,42'], 'announced once, with both ids');
        } else {
          t.deepEqual(heard.messages, [], 'nothing published without the permission');
        }
        // Nothing to invalidate in Redis: announced by a script of its own.
        const alone = announcement(app.core, ['43']);
        t.true(await app.core.invalidateNow([], alone));
        await new Promise((r) => setTimeout(r, 200));
        t.is(await server.admin.get(alone.marks[0]!), '1');
        t.deepEqual(heard.messages.slice(user.publishes ? 1 : 0), user.publishes ? ['43'] : []);
      } finally {
        heard.close();
        await app.cacheops.close();
        await app.sequelize.close();
        await server.admin.flushall();
      }
    }
  });
}

test.serial('the start-up check of writes stream names PUBLISH and SUBSCRIBE when the channel is not granted', async (t) => {
  const features = { prefix: PREFIX, streamWrites: true } as const;
  const granted = new IORedis(await server.createUser('granted', aclRules(features)));
  const without = new IORedis(await server.createUser('nochannel', aclRules({ prefix: PREFIX }).replace('-@all', '-@all +publish +subscribe')));
  try {
    t.is((await checkPermissions(granted, features, 'test')).kind, 'ok');
    const denied = await checkPermissions(without, features, 'test');
    t.is(denied.kind, 'missing');
    if (denied.kind === 'missing') t.deepEqual([...denied.error.missing], ['publish', 'subscribe']);
    t.regex(aclRules(features), /&announce:cacheops:\{0\}:stream:done:\*/);
    t.regex(aclRules({ ...features, prefixFunction: true }), /&\*cacheops:\{0\}:stream:done:\*/);
  } finally {
    granted.disconnect();
    without.disconnect();
  }
});

test.serial('a prefix function: an announcement outside the namespace of the invalidation is sent by a script of its own, after it', async (t) => {
  // The tables written take one prefix, the announcement the prefix of no tables: the two are not folded.
  const prefixOf = (q: { tables: readonly string[] }): string => (q.tables.length === 0 ? 'announce-none:' : 'announce-items:');
  const app = await openApp(server.redis.url, false, prefixOf);
  const ns = namespace(app.core.prefixFor([]), 0);
  t.is(ns, namespace('announce-none:', 0));
  const done: DoneAnnouncement = { ns, marks: [streamDoneKey(ns, app.core.db, '51')], ttlMs: 60_000, channel: streamDoneChannel(ns, app.core.db), ids: '51' };
  const heard = await listen(done.channel);
  try {
    await app.Item.findAll({ where: { id: 1 } });
    t.true(await cached(app), 'the read is cached');
    const scriptsBefore = await scriptCalls();
    t.true(await app.core.invalidateNow([{ model: app.Item, table: 'items', rows: [{ id: 1, name: 'a' }] }], done));
    t.is(await scriptCalls() - scriptsBefore, 2, 'the invalidation, then the announcement');
    t.false(await cached(app), 'the value was invalidated');
    t.is(await server.admin.get(done.marks[0]!), '1', 'the transaction is marked in the namespace of the announcement');
    await new Promise((r) => setTimeout(r, 200));
    t.deepEqual(heard.messages, ['51']);
  } finally {
    heard.close();
    await app.cacheops.close();
    await app.sequelize.close();
    await server.admin.flushall();
  }
});
