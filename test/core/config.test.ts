/**
 * Configuration (SPEC section 1): every option accepted and acted on, bad
 * configuration rejected naming its key, one installation per Sequelize.
 */
import test from 'ava';
import IORedis from 'ioredis';
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { installCacheops, CacheopsConfigError, CacheopsError, type CacheopsConfig } from '../../src/index';
import { dialects, makeSequelize, rawRedis, redisUrl, uniquePrefix, type Dialect } from '../helpers/env';
import { keysMatching, redisDbUrl, sleep, sqlCount, valueKeys } from '../helpers/check';
import { fastPathOf, servedCounter } from '../helpers/fast-path';

/** The Redis database of the prefix-function tests (their invalidateAll may reach every cacheops key there). */
const FN_DB = 6;

const NAMES = ['Post', 'BlogPost', 'BlogComment', 'Audit', 'Other'] as const;
type Models = Record<(typeof NAMES)[number], ModelStatic<Model>>;

async function setup(dialect: Dialect): Promise<{ sequelize: Sequelize; m: Models }> {
  const sequelize = await makeSequelize(dialect, __filename);
  const m = Object.fromEntries(NAMES.map((n) => [n, sequelize.define(n, { n: DataTypes.INTEGER })])) as Models;
  await sequelize.sync({ force: true });
  for (const model of Object.values(m)) await model.bulkCreate([{ n: 1 }, { n: 2 }]);
  return { sequelize, m };
}

/** True when the read is served from cache the second time (it runs SQL once, then none). */
async function isCached(sequelize: Sequelize, read: () => Promise<unknown>): Promise<boolean> {
  const first = await sqlCount(sequelize, read);
  const second = await sqlCount(sequelize, read);
  if (first === 0) throw new Error('the read was already cached before the check');
  return second === 0;
}

/** The TTL of the single value key a read stores. */
async function ttlOfStored(prefix: string, read: () => Promise<unknown>): Promise<number> {
  const before = new Set(await valueKeys(prefix));
  await read();
  const added = (await valueKeys(prefix)).filter((k) => !before.has(k));
  if (added.length !== 1) throw new Error(`expected one new value key, got ${added.length}`);
  const redis = rawRedis();
  try {
    return await redis.ttl(added[0]!);
  } finally {
    redis.disconnect();
  }
}

for (const dialect of dialects()) {
  test.serial(`${dialect}: profiles by exact name, glob, '*', null and [ops, timeout]; defaults merged`, async (t) => {
    const { sequelize, m } = await setup(dialect);
    const prefix = uniquePrefix('profiles');
    const cacheops = installCacheops(sequelize, {
      redis: redisUrl, prefix, defaults: { timeout: 120 },
      profiles: { Post: { ops: 'get' }, 'Blog*': ['fetch', 60], BlogComment: { ops: ['count'] }, Audit: null, '*': {} },
    });
    try {
      t.true(await isCached(sequelize, () => m.Post.findByPk(1)), 'exact profile: get cached');
      t.false(await isCached(sequelize, () => m.Post.findAll()), 'exact profile: fetch not in ops');
      t.true(await isCached(sequelize, () => m.BlogPost.findAll()), 'glob profile: fetch cached');
      t.false(await isCached(sequelize, () => m.BlogPost.count()), 'glob profile: count not in ops');
      t.true(await isCached(sequelize, () => m.BlogComment.count()), 'the exact name beats the glob');
      t.false(await isCached(sequelize, () => m.BlogComment.findAll()));
      t.false(await isCached(sequelize, () => m.Other.findAll()), "'*': {} caches nothing automatically");
      t.true(await isCached(sequelize, () => m.Other.findAll({ cacheops: true })), "'*': {} allows manual caching");
      t.false(await isCached(sequelize, () => m.Audit.findAll({ cacheops: true })), 'null forbids even manual caching');
      const postTtl = await ttlOfStored(prefix, () => m.Post.findByPk(2));
      t.true(postTtl > 60 && postTtl <= 120, `defaults.timeout applies: ${postTtl}`);
      const blogTtl = await ttlOfStored(prefix, () => m.BlogPost.findAll({ where: { n: 2 } }));
      t.true(blogTtl > 0 && blogTtl <= 60, `the shorthand timeout applies: ${blogTtl}`);
    } finally {
      await cacheops.invalidateAll();
      await cacheops.close();
      await sequelize.close();
    }
  });

  test.serial(`${dialect}: defaults' ops reach '*', a profile's timeout beats defaults; '*': null and no '*'`, async (t) => {
    const { sequelize, m } = await setup(dialect);
    const prefix = uniquePrefix('defaults');
    const cacheops = installCacheops(sequelize, {
      redis: redisUrl, prefix, defaults: { ops: 'all', timeout: 30 },
      profiles: { Post: { timeout: 90 }, BlogPost: ['just_enable'], BlogComment: { ops: [] }, Audit: ['get'], '*': {} },
    });
    const second = await makeSequelize(dialect, __filename);
    const Solo = second.define('Solo', { n: DataTypes.INTEGER }, { tableName: 'Others' });
    const Other2 = second.define('Other', { n: DataTypes.INTEGER });
    const without = installCacheops(second, { redis: redisUrl, prefix: uniquePrefix('nostar'), profiles: { Solo: ['all'] } });
    const third = await makeSequelize(dialect, __filename);
    const Other3 = third.define('Other', { n: DataTypes.INTEGER });
    const nullStar = installCacheops(third, { redis: redisUrl, prefix: uniquePrefix('nullstar'), profiles: { '*': null } });
    try {
      await second.sync(); // SQLite: a database of its own
      await third.sync();
      const otherTtl = await ttlOfStored(prefix, () => m.Other.findAll());
      t.true(otherTtl > 0 && otherTtl <= 30, `'*' gets the defaults: ${otherTtl}`);
      const postTtl = await ttlOfStored(prefix, () => m.Post.count());
      t.true(postTtl > 30 && postTtl <= 90, `the profile's timeout wins: ${postTtl}`);
      t.false(await isCached(sequelize, () => m.BlogPost.findAll()), "'just_enable': nothing automatic");
      t.true(await isCached(sequelize, () => m.BlogPost.findAll({ cacheops: true })));
      t.false(await isCached(sequelize, () => m.BlogComment.findAll()), '[] ops: nothing automatic');
      t.true(await isCached(sequelize, () => m.Audit.findOne({ where: { n: 1 } })), '[ops] shorthand without timeout');
      t.true(await isCached(second, () => Solo.findAll()));
      t.false(await isCached(second, () => Other2.findAll({ cacheops: true })), 'no matching profile: never cached');
      t.false(await isCached(third, () => Other3.findAll({ cacheops: true })), "'*': null forbids everything");
    } finally {
      for (const c of [cacheops, without, nullStar]) { await c.invalidateAll(); await c.close(); }
      for (const s of [sequelize, second, third]) await s.close();
    }
  });

  test.serial(`${dialect}: redis given as URL (with db), options object and ioredis instance`, async (t) => {
    const url = new URL(redisUrl);
    const forms: [string, CacheopsConfig['redis'], number][] = [
      ['url', `${url.protocol}//${url.host}/3`, 3],
      ['options', { host: url.hostname, port: Number(url.port || 6379), db: 4 }, 4],
      ['instance', new IORedis(`${url.protocol}//${url.host}/5`), 5],
    ];
    for (const [label, redis, db] of forms) {
      const { sequelize, m } = await setup(dialect);
      const prefix = uniquePrefix(label);
      const closeListeners = redis instanceof IORedis ? redis.listenerCount('close') : 0;
      const cacheops = installCacheops(sequelize, { redis, prefix, profiles: { '*': ['all'] } });
      const probe = new IORedis(`${url.protocol}//${url.host}/${db}`);
      try {
        t.true(await isCached(sequelize, () => m.Post.findAll()), label);
        const [, keys] = await probe.scan('0', 'MATCH', `${prefix}cacheops:*`, 'COUNT', 10000);
        t.true(keys.length > 0, `${label}: keys are in database ${db}`);
      } finally {
        await cacheops.invalidateAll();
        await cacheops.close();
        await sequelize.close();
        await probe.del(`${prefix}cacheops:{0}:epochs`); // invalidateAll keeps it; this database is ours
        probe.disconnect();
      }
      if (redis instanceof IORedis) {
        t.is(await redis.ping(), 'PONG', 'close() leaves a client it was given open');
        t.is(redis.listenerCount('close'), closeListeners, 'close() takes its listener off a client it was given');
        redis.disconnect();
      } else {
        // QUIT is answered before the socket ends.
        for (let i = 0; i < 100 && cacheops.core.redis.status !== 'end'; i++) await sleep(10);
        t.is(cacheops.core.redis.status, 'end', `${label}: close() quits the connection it opened`);
      }
    }
  });

  test.serial(`${dialect}: enabled: false makes every call a no-op`, async (t) => {
    const { sequelize, m } = await setup(dialect);
    const prefix = uniquePrefix('disabled');
    const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix, enabled: false, profiles: { '*': ['all'] } });
    try {
      for (const read of [() => m.Post.findAll(), () => m.Post.findAll({ cacheops: true }), () => m.Post.count(), () => m.Post.findByPk(1)]) {
        t.is(await sqlCount(sequelize, read), 1);
        t.is(await sqlCount(sequelize, read), 1, 'SQL runs every time');
      }
      const row = await m.Post.create({ n: 7 });
      await cacheops.invalidateObj(row);
      await cacheops.invalidateDict(m.Post, { n: 7 });
      await cacheops.invalidateModel(m.Post);
      await cacheops.invalidateAll();
      t.deepEqual(await keysMatching(`${prefix}*`), [], 'nothing written to Redis');
      t.deepEqual(cacheops.stats(), { hits: 0, misses: 0, stores: 0, refusedStores: 0, invalidations: 0, modelInvalidations: 0, nearHits: 0, staleHits: 0, checks: 0, stale: 0, fullStores: 0, changeStream: { role: 'off', lagMs: null, retainedBytes: null, events: 0, resets: 0 } });
    } finally {
      await cacheops.close();
      await sequelize.close();
    }
  });

  test.serial(`${dialect}: prefix string and prefix function`, async (t) => {
    const { sequelize, m } = await setup(dialect);
    const prefix = uniquePrefix('pstring');
    const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix, profiles: { '*': ['all'] } });
    try {
      t.true(await isCached(sequelize, () => m.Post.findAll()));
      const keys = await keysMatching(`${prefix}*`);
      t.true(keys.length > 0 && keys.every((k) => k.startsWith(`${prefix}cacheops:{`)), 'every key starts with the prefix');
    } finally {
      await cacheops.invalidateAll();
      await cacheops.close();
      await sequelize.close();
    }
    // A prefix function's invalidateAll cannot know every prefix the function may return, so it
    // may reach past them: it runs on a Redis database of its own, away from the other tests.
    const fn = await setup(dialect);
    const base = uniquePrefix('pfn');
    const seen: { tables: string[]; db: string; dialect: string }[] = [];
    const byFn = installCacheops(fn.sequelize, {
      redis: redisDbUrl(FN_DB), profiles: { '*': ['all'] },
      prefix: (q) => { seen.push({ tables: [...q.tables], db: q.db, dialect: q.dialect }); return `${base}${q.dialect}:`; },
    });
    const redis = new IORedis(redisDbUrl(FN_DB));
    try {
      await redis.set(`${base}unrelated`, 'keep');
      t.true(await isCached(fn.sequelize, () => fn.m.Post.findAll({ where: { n: 1 } })));
      t.true(seen.some((q) => q.tables.includes('Posts') && q.dialect === dialect && q.db === String(fn.sequelize.config.database ?? '')));
      t.true((await valueKeys(`${base}${dialect}:`, FN_DB)).length > 0, 'keys use the returned prefix');
      await fn.m.Post.create({ n: 1 });
      t.is(await sqlCount(fn.sequelize, () => fn.m.Post.findAll({ where: { n: 1 } })), 1, 'writes invalidate under the same prefix');
      await byFn.invalidateAll();
      t.deepEqual(await valueKeys(`${base}${dialect}:`, FN_DB), [], 'invalidateAll drops what the function prefixed');
      t.is(await sqlCount(fn.sequelize, () => fn.m.Post.findAll({ where: { n: 1 } })), 1);
      t.is(await redis.get(`${base}unrelated`), 'keep', 'keys outside cacheops survive');
    } finally {
      await redis.del(`${base}unrelated`);
      redis.disconnect();
      await byFn.invalidateAll();
      await byFn.close();
      await fn.sequelize.close();
    }
  });

  // SPEC 3: invalidateAll drops "everything of this installation (its prefix), not other data in the
  // Redis database" — with a prefix function, the prefixes it returned (registered in Redis).
  test.serial(`${dialect}: a prefix function's invalidateAll leaves other installations' caches alone`, async (t) => {
    const neighbour = await setup(dialect);
    const other = installCacheops(neighbour.sequelize, { redis: redisDbUrl(FN_DB), prefix: uniquePrefix('neighbour'), profiles: { '*': ['all'] } });
    const fn = await setup(dialect);
    const base = uniquePrefix('pfn2');
    const byFn = installCacheops(fn.sequelize, { redis: redisDbUrl(FN_DB), profiles: { '*': ['all'] }, prefix: () => base });
    try {
      t.true(await isCached(neighbour.sequelize, () => neighbour.m.Post.findAll()));
      t.true(await isCached(fn.sequelize, () => fn.m.Post.findAll()));
      await byFn.invalidateAll();
      t.is(await sqlCount(fn.sequelize, () => fn.m.Post.findAll()), 1);
      t.is(await sqlCount(neighbour.sequelize, () => neighbour.m.Post.findAll()), 0, "the other installation's cache survives");
    } finally {
      await other.invalidateAll();
      await other.close();
      await byFn.close();
      await neighbour.sequelize.close();
      await fn.sequelize.close();
    }
  });

  test.serial(`${dialect}: installing twice throws; close() works and may be repeated`, async (t) => {
    const { sequelize, m } = await setup(dialect);
    const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix: uniquePrefix('twice'), profiles: { '*': ['all'] } });
    try {
      const error = t.throws(() => installCacheops(sequelize, { redis: redisUrl }));
      t.true(error instanceof CacheopsError);
      t.false(error instanceof CacheopsConfigError);
      t.regex(error?.message ?? '', /already installed/);
      t.true(await isCached(sequelize, () => m.Post.findAll()), 'the first installation keeps working');
      await cacheops.invalidateAll();
      await cacheops.close();
      t.is(await sqlCount(sequelize, () => m.Post.findAll()), 1, 'after close, reads go to the database');
      t.is(await sqlCount(sequelize, () => m.Post.findAll()), 1);
      t.deepEqual((await m.Post.findAll({ order: [['id', 'ASC']] })).map((p) => p.get('n')), [1, 2]);
      await t.notThrowsAsync(cacheops.close(), 'close() twice is fine');
    } finally {
      await cacheops.close();
      await sequelize.close();
    }
  });

  test.serial(`${dialect}: a write after close() says once that it invalidated nothing`, async (t) => {
    const { sequelize, m } = await setup(dialect);
    const lines: string[] = [];
    const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix: uniquePrefix('afterclose'), profiles: { '*': ['all'] }, logger: (msg) => lines.push(msg) });
    try {
      await m.Post.create({ n: 7 });
      t.deepEqual(lines, [], 'a write while open logs nothing');
      await cacheops.invalidateAll();
      await cacheops.close();
      await m.Post.create({ n: 8 });
      await m.Post.destroy({ where: { n: 8 } });
      const said = lines.filter((l) => l.includes('after close()'));
      t.is(said.length, 1, `one line for two writes (${lines.join(' | ')})`);
      t.regex(said[0] ?? '', /a write to \S+ after close\(\) invalidated nothing/);
    } finally {
      await cacheops.close();
      await sequelize.close();
    }
  });
}

// Validation needs no database: the configuration is checked before anything connects.
test.serial('bad configuration throws CacheopsConfigError naming the key', async (t) => {
  const sequelize = await makeSequelize('sqlite', __filename);
  for (const n of NAMES) sequelize.define(n, { n: DataTypes.INTEGER });
  const cases: [string, unknown][] = [
    ['profiles.Post.ops', { profiles: { Post: { ops: 'gett' } } }],
    ['profiles.Post.ops', { profiles: { Post: { ops: ['get', 'nope'] } } }],
    ['profiles.Post.ops', { profiles: { Post: [['fetch', 'bad'], 60] } }],
    ['profiles.Post.timeout', { profiles: { Post: { timeout: -1 } } }],
    ['profiles.Post.timeout', { profiles: { Post: ['get', -5] } }],
    ['profiles.Post.timeout', { profiles: { Post: { timeout: 0 } } }],
    ['defaults.timeout', { defaults: { timeout: -10 } }],
    ['defaults.ops', { defaults: { ops: 'everything' } }],
    ['bogus', { bogus: 1 }],
    ['profiles.Post.opps', { profiles: { Post: { opps: 'get' } } }],
    ['defaults.tiemout', { defaults: { tiemout: 5 } }],
    ['profiles.Missing', { strict: true, profiles: { Missing: {} } }],
    ['prefix', { prefix: 'a{b' }],
    ['prefix', { prefix: 'tenant}' }],
    ['prefix', { prefix: 42 }],
    ['redis', { redis: 'http://127.0.0.1:6379' }],
    ['profiles.Post.lock', { profiles: { Post: { lock: 'yes' } } }],
    ['profiles.Post', { profiles: { Post: 'get' } }],
    ['enabled', { enabled: 'no' }],
    ['profiles.Post.staleWhileRevalidate', { profiles: { Post: { staleWhileRevalidate: -1 } } }],
    ['profiles.Post.staleWhileRevalidate', { profiles: { Post: { staleWhileRevalidate: '30' } } }],
    ['profiles.Post.staleWhileRevalidate', { profiles: { Post: { staleWhileRevalidate: Infinity } } }],
    ['profiles.Post.staleWhileRevalidate', { profiles: { Post: { staleWhileRevalidate: true } } }],
    ['defaults.staleWhileRevalidate', { defaults: { staleWhileRevalidate: Number.NaN } }],
  ];
  // Messages show what was given, strings quoted: '1000' is not the number 1000.
  const messages: [unknown, string][] = [
    [{ redisTimeout: '1000' }, 'redisTimeout: expected a positive integer, got "1000" (a string)'],
    [{ redisTimeout: 1.5 }, 'redisTimeout: expected a positive integer, got 1.5'],
    [{ maxInListLength: null }, 'maxInListLength: expected a positive integer, got null'],
    [{ clusterShards: 16n }, 'clusterShards: expected a positive integer, got 16n (a bigint)'],
    [{ profiles: { Post: { timeout: '60' } } }, 'profiles.Post.timeout: timeout must be a positive number of seconds, got "60" (a string)'],
    [{ profiles: { Post: { lock: 'yes' } } }, 'profiles.Post.lock: expected true or false, got "yes" (a string)'],
    [{ enabled: 1 }, 'enabled: expected true or false, got 1'],
    [{ degradeOnFailure: {} }, 'degradeOnFailure: expected true or false, got an object'],
    [{ profiles: { Post: { ops: 'gett' } } }, 'profiles.Post.ops: unknown op "gett": did you mean "get"? (expected one of: get, fetch, count, aggregate, exists, all, just_enable)'],
    [{ profiles: { Post: { ops: [1] } } }, 'profiles.Post.ops: unknown op 1 (expected one of: get, fetch, count, aggregate, exists, all, just_enable)'],
    [{ profiles: { Post: { staleWhileRevalidate: '30' } } }, 'profiles.Post.staleWhileRevalidate: expected a number of seconds (0 for off), got "30" (a string)'],
    [{ redis: { sentinels: [{ host: '127.0.0.1', port: 1 }], name: 'mymaster', role: 'slave' } },
      "redis: role 'slave' connects to a replica, which refuses cacheops' stores and invalidations and may not have the latest invalidation yet: leave role out (Sentinel's master, 'master')"],
  ];
  for (const [config, message] of messages) {
    t.throws(() => installCacheops(sequelize, config as CacheopsConfig), { instanceOf: CacheopsConfigError, message });
  }
  for (const [key, config] of cases) {
    const error = t.throws(() => installCacheops(sequelize, config as CacheopsConfig), undefined, key);
    t.true(error instanceof CacheopsConfigError, `${key}: ${String(error)}`);
    t.is((error as CacheopsConfigError).key, key);
    t.true(error?.message.startsWith(`${key}:`), error?.message);
  }
  // Accepted: strict with existing models, a glob matching nothing, a missing model without strict.
  for (const config of [
    { strict: true, profiles: { Post: ['all', 10], 'Nothing*': {} } }, { profiles: { Missing: {} } },
    { defaults: { staleWhileRevalidate: 0 }, profiles: { Post: { staleWhileRevalidate: 2.5 } } },
  ] as CacheopsConfig[]) {
    const { sequelize: s } = { sequelize: await makeSequelize('sqlite', __filename) };
    for (const n of NAMES) s.define(n, { n: DataTypes.INTEGER });
    const c = installCacheops(s, { redis: redisUrl, prefix: uniquePrefix('ok'), ...config });
    t.truthy(c);
    await c.close();
    await s.close();
  }
  await sequelize.close();
});

for (const dialect of dialects()) {
  test.serial(`${dialect}: a bad cacheops find option throws CacheopsConfigError`, async (t) => {
    const { sequelize, m } = await setup(dialect);
    const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix: uniquePrefix('findopt'), profiles: { '*': {}, Audit: null } });
    try {
      const timeout = await t.throwsAsync(m.Post.findAll({ cacheops: { timeout: -1 } }));
      t.is((timeout as CacheopsConfigError).key, 'cacheops.timeout');
      const ops = await t.throwsAsync(m.Post.findAll({ cacheops: { ops: ['fetchh'] } } as never)); // untyped callers can pass anything
      t.is((ops as CacheopsConfigError).key, 'cacheops.ops');
      t.true(await isCached(sequelize, () => m.Post.findAll({ cacheops: { timeout: 100000 } })), 'a long timeout is fine');

      // What plain JavaScript can pass: unknown keys and wrong types reject naming the key, on
      // every read entry point, also for a model whose profile forbids caching, and every time
      // (a rejected call leaves nothing for the fast path to reuse).
      const untyped = (option: unknown): { cacheops: never } => ({ cacheops: option as never });
      const reads: [string, (o: { cacheops: never }) => Promise<unknown>][] = [
        ['findAll', (o) => m.Post.findAll(o)],
        ['findOne', (o) => m.Post.findOne(o)],
        ['findByPk', (o) => m.Post.findByPk(1, o)],
        ['count', (o) => m.Post.count(o)],
        ['findAndCountAll', (o) => m.Post.findAndCountAll(o)],
        ['max', (o) => m.Post.max('n', o)],
        ['forbidden model', (o) => m.Audit.findAll(o)],
      ];
      const bad: [unknown, string, RegExp][] = [
        [{ opz: 1 }, 'cacheops.opz', /unknown key of the cacheops find option: did you mean "ops"\? \(known: ops, timeout, lock\)$/],
        [{ timeout: 60, tiemout: 60 }, 'cacheops.tiemout', /unknown key of the cacheops find option: did you mean "timeout"\? \(known: ops, timeout, lock\)$/],
        [{ bogus: 1 }, 'cacheops.bogus', /unknown key of the cacheops find option \(known: ops, timeout, lock\)$/],
        [{ lock: 'yes' }, 'cacheops.lock', /expected true or false, got "yes" \(a string\)/],
        [{ timeout: '60' }, 'cacheops.timeout', /got "60" \(a string\)/],
        [{ invalidate: 0 }, 'cacheops.invalidate', /got 0$/],
        ['yes', 'cacheops', /true, false or \{ ops, timeout, lock \}, got "yes" \(a string\)/],
        [[], 'cacheops', /got an array of 0/],
      ];
      for (const [name, read] of reads) {
        for (const [option, key, message] of bad) {
          for (let i = 0; i < 3; i++) {
            const error = await t.throwsAsync(read(untyped(option)), { instanceOf: CacheopsConfigError }, `${name} ${JSON.stringify(option)}`);
            t.is((error as CacheopsConfigError).key, key, `${name} ${JSON.stringify(option)}`);
            t.regex(error!.message, message);
          }
        }
      }
      // A read/write call shares its options (findOrCreate): `invalidate` is accepted on reads.
      await m.Post.findAll({ cacheops: { invalidate: false } });
      // The fast path parses the option once per call shape and applies it on every later call.
      const served = servedCounter(fastPathOf(cacheops));
      const where = { n: 2 };
      try {
        t.true(await isCached(sequelize, () => m.Post.findAll({ where, cacheops: { timeout: 77 } })));
        t.true(served.count() > 0, 'the repeated call is served by the fast path');
      } finally {
        served.restore();
      }
      await cacheops.invalidateAll();
      const ttl = await ttlOfStored(cacheops.core.config.prefix as string, () => m.Post.findAll({ where, cacheops: { timeout: 77 } }));
      t.true(ttl > 70 && ttl <= 77, `the fast path's miss stores with the call's timeout (ttl ${ttl})`);
    } finally {
      await cacheops.invalidateAll();
      await cacheops.close();
      await sequelize.close();
    }
  });
}
