/**
 * A full Redis finds room again by a probe of its own (pressure.ts), not by a
 * store: under writes that never pause, nearly every store races an
 * invalidation and is refused for it, which says nothing of memory. A private
 * redis-server with maxmemory (noeviction) is filled while readers and writers
 * run on the same keys; once memory is freed, the full state must end within
 * the probe interval plus what the run measured (the slowest read, the
 * library's own Redis round trips, the event loop's delay), never after a
 * number of lucky stores. Meanwhile the probe goes at most once per interval,
 * and not at all while nothing is read; its key expires by itself and
 * invalidateAll deletes it. On a cluster, one master full keeps the state
 * until every shard's probe is accepted.
 */
import test from 'ava';
import IORedis from 'ioredis';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Sequelize } from 'sequelize';
import { installCacheops } from '../../src/index';
import { sleep } from '../helpers/check';
import { defineBlog, makeBlog } from '../helpers/models';
import { startPrivateRedis } from '../helpers/private-redis';
import { startPrivateCluster } from '../helpers/private-cluster';
import { KEYS, fillRedis, readOf, startWorkload, unfillRedis } from '../helpers/faults';
import { FullState, isOomError, type ProbeResult } from '../../src/core/pressure';
import { fullProbeKey, namespace } from '../../src/core/keys';


/** SET calls Redis received (answered or refused) since the last CONFIG RESETSTAT. */
async function setCalls(raw: IORedis): Promise<number> {
  const line = /cmdstat_set:([^\r\n]*)/.exec(await raw.info('commandstats'))?.[1] ?? '';
  const field = (name: string): number => Number(new RegExp(`\\b${name}=(\\d+)`).exec(line)?.[1] ?? 0);
  return field('calls') + field('rejected_calls');
}

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!condition() && Date.now() < end) await sleep(2);
  return condition();
}

test.serial('a full Redis under writes that never pause finds room within the probe interval and measured round trips', async (t) => {
  const redis = await startPrivateRedis(['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction']);
  const logged: { at: number; message: string }[] = [];
  const blog = await makeBlog('sqlite', __filename, {
    redis: redis.url, degradeOnFailure: true, redisTimeout: 1000, logger: (message) => logged.push({ at: Date.now(), message }),
  }, 'probe');
  const raw = new IORedis(redis.url);
  const { cacheops } = blog;
  const core = cacheops.core;
  const full = core.store.full;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  let work: ReturnType<typeof startWorkload> | undefined;
  try {
    const probeKey = fullProbeKey(namespace(core.prefixFor([]), 0));
    await blog.Post.bulkCreate(KEYS.flatMap((k) => [{ title: `a${k}`, views: k }, { title: `b${k}`, views: k }]));
    // Writers with no pause between writes, on the keys the readers read.
    work = startWorkload(blog, { readers: 4, writers: 2, writePauseMs: 0 });
    await sleep(500);
    const filler = await fillRedis(redis.url);
    // Under these writes nearly every store is refused as raced before it writes, so the one that
    // meets OOM is a plain cache entry's.
    await cacheops.cache.set('probe-fill', 'x');
    t.true(full.isFull(), 'a refused store made the state full');
    await raw.config('RESETSTAT');
    const fullFrom = Date.now();
    const fullStoresBefore = cacheops.stats().fullStores;
    await sleep(1500);
    const probes = await setCalls(raw);
    const fullFor = Date.now() - fullFrom;
    t.true(full.isFull(), `still full: ${logged.map((l) => l.message).join(' | ')}`);
    t.true(cacheops.stats().fullStores > fullStoresBefore, 'stores skipped meanwhile are counted');
    const probeKeyWhileFull = await raw.exists(probeKey);

    // Memory freed: the library's own round trips to Redis, timed from now until the state ends.
    loop.enable();
    const interval = full.probeMs;
    let rtt = 0;
    let timing = true;
    const timer = (async () => {
      while (timing) {
        const started = performance.now();
        await core.redis.ping();
        rtt = Math.max(rtt, performance.now() - started);
        await sleep(5);
      }
    })();
    await unfillRedis(redis.url, filler);
    const healed = Date.now();
    const ended = await until(() => !full.isFull(), 15_000);
    const endedAt = Date.now();
    timing = false;
    await timer;
    loop.disable();
    const refusedBefore = cacheops.stats().refusedStores + cacheops.stats().stores;
    await sleep(300);
    const attempted = cacheops.stats().refusedStores + cacheops.stats().stores - refusedBefore;
    const result = await work.stop();
    work = undefined;
    const reads = result.latencies.filter((l) => l.at + l.ms >= healed - 100 && l.at <= endedAt).map((l) => l.ms);
    const slowestRead = Math.max(0, ...reads);
    const lag = loop.max / 1e6;
    // The probe goes with the first store skipped after the interval (a read's miss: at most the
    // slowest read later), and ends the state in one round trip (twice the slowest measured).
    const bound = interval + slowestRead + 2 * rtt + lag;
    const took = endedAt - healed;
    t.log(`room again ${ended ? `${took} ms` : 'never (15 s)'} after memory was freed (bound ${bound.toFixed(0)} ms: interval ${interval}, slowest read ${slowestRead.toFixed(0)}, ` +
      `round trip max ${rtt.toFixed(1)}, event loop delay max ${lag.toFixed(0)}); ${result.reads} reads, ${result.writes} writes`);
    t.true(ended && took <= bound, `room again ${took} ms after memory was freed (bound ${bound.toFixed(0)} ms)`);
    t.deepEqual(result.errors, [], 'no error reached the application');
    // One probe per interval (250 ms) at most while full; none of the skipped stores reached Redis.
    t.true(probes >= 1 && probes <= Math.floor(fullFor / interval) + 1, `${probes} SETs in ${fullFor} ms while full`);
    t.is(probeKeyWhileFull, 0, 'the refused probe wrote nothing');
    t.true(attempted > 0, `stores go to Redis again (${attempted} stored or refused as raced in 300 ms)`);
    t.deepEqual(logged.map((l) => l.message.split(':')[0]), ['Redis is full', 'Redis has room again'], logged.map((l) => l.message).join(' | '));
    t.is(core.store.breaker.outages, 0, 'a full Redis is no outage');

    // Caching resumed (once the writes stopped, a miss stores and the next read hits).
    let hit = false;
    const onRead = (e: { hit: boolean }): void => { hit ||= e.hit; };
    await readOf(blog, KEYS[0]);
    cacheops.on('read', onRead);
    await readOf(blog, KEYS[0]);
    cacheops.off('read', onRead);
    t.true(hit, 'caching resumed');

    // The accepted probe's key expires by itself, and invalidateAll deletes it.
    const ttl = await raw.pttl(probeKey);
    t.true(ttl === -2 || (ttl > 0 && ttl <= 1000), `the probe key expires (PTTL ${ttl})`);
    await raw.set(probeKey, 'x', 'PX', 60_000);
    await cacheops.invalidateAll();
    t.is(await raw.exists(probeKey), 0, 'invalidateAll deletes the probe key');

    // Full again (within a minute: the interval doubles) while nothing is read: no probe is sent.
    const again = await fillRedis(redis.url);
    t.deepEqual((await blog.Post.findAll({ where: { views: 7 } })).length, 0);
    t.true(full.isFull(), 'the store of a miss found Redis full');
    await raw.config('RESETSTAT');
    await sleep(2 * full.probeMs + 200);
    t.is(await setCalls(raw), 0, 'an idle application sends no probe');
    await unfillRedis(redis.url, again);
    await blog.Post.findAll({ where: { views: 7 } }); // a skipped store: the due probe goes
    await full.probing;
    t.false(full.isFull(), 'the probe found room');
  } finally {
    loop.disable();
    await work?.stop().catch(() => undefined);
    raw.disconnect();
    await blog.close().catch(() => undefined);
    await redis.stop();
  }
});

test.serial('the probe\'s back-off: once per interval, doubled when Redis fills again within a minute of having room', async (t) => {
  // A real Redis made full and roomy by its maxmemory: 1 byte refuses every write, 0 lifts the limit.
  const redis = await startPrivateRedis(['--maxmemory-policy', 'noeviction']);
  const raw = new IORedis(redis.url);
  const setLimit = async (bytes: number): Promise<void> => { await raw.config('SET', 'maxmemory', String(bytes)); };
  const logged: string[] = [];
  let probes = 0;
  const probe = async (): Promise<ProbeResult> => {
    probes += 1;
    return raw.set('probe:full', 'x', 'PX', 1000).then(() => 'room' as const, (error: unknown) => (isOomError(error) ? 'full' : 'failed'));
  };
  const full = new FullState({ endpoint: 'here', logger: (m) => logged.push(m), probe });
  try {
    const oom = new Error("OOM command not allowed when used memory > 'maxmemory'.");
    t.true(full.mayStore());
    await setLimit(1);
    full.refused(oom, 'a cache store');
    t.false(full.mayStore(), 'stores skipped');
    t.is(probes, 0, 'no probe before the interval');
    await sleep(300);
    t.false(full.mayStore(), 'the store is skipped; the probe goes instead');
    t.false(full.mayStore());
    await full.probing;
    t.is(probes, 1, 'one probe at a time, one per interval');
    t.true(full.isFull(), 'refused with OOM: still full');
    await setLimit(0);
    t.false(full.mayStore(), 'the interval is not over');
    await sleep(300);
    full.mayStore();
    await full.probing;
    t.is(probes, 2);
    t.false(full.isFull(), 'accepted: room again');
    t.true(full.mayStore());
    full.refused(oom, 'a cache store');
    await sleep(300);
    full.mayStore();
    t.is(probes, 2, 'filled again at once: the interval doubled');
    await sleep(250);
    full.mayStore();
    await full.probing;
    t.is(probes, 3);
    t.false(full.isFull());
    t.deepEqual(logged.map((m) => m.split(':')[0]), ['Redis is full', 'Redis has room again', 'Redis is full', 'Redis has room again']);
    t.true(isOomError(Object.assign(new Error('EXECABORT Transaction discarded because of previous errors.'), { previousErrors: [oom] })));
    t.false(isOomError(new Error('ECONNREFUSED')));
  } finally {
    raw.disconnect();
    await redis.stop();
  }
});

test.serial('a cluster with one master full: the probe writes every shard, and room on all of them ends the state', async (t) => {
  const cluster = await startPrivateCluster();
  const client = cluster.client();
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const { Post } = defineBlog(sequelize);
  await sequelize.sync();
  const logged: string[] = [];
  const shards = 12;
  const cacheops = installCacheops(sequelize, { redis: client, profiles: { '*': { ops: 'all' } }, clusterShards: shards, logger: (m) => logged.push(m) });
  const full = cacheops.core.store.full;
  const keys = Array.from({ length: shards }, (_, shard) => fullProbeKey(namespace('', shard)));
  try {
    await Post.bulkCreate(Array.from({ length: 60 }, (_, i) => ({ title: `p${i}`, views: i })));
    const masters = client.nodes('master');
    // Any write refused there: its memory is above a limit of 1 byte.
    await masters[1]!.config('SET', 'maxmemory', '1');
    for (let v = 0; v < 60 && !full.isFull(); v += 1) await Post.findAll({ where: { views: v } });
    t.true(full.isFull(), 'a store on the full master made the state full');
    // Probes go while reads skip their stores; the full master refuses its shards' probe keys.
    const until = Date.now() + 3 * full.probeMs;
    for (let v = 0; Date.now() < until; v = (v + 1) % 60) await Post.findAll({ where: { views: v } });
    await full.probing;
    t.true(full.isFull(), 'still full while one master is');
    const written = (await Promise.all(keys.map((k) => client.exists(k)))).reduce((a, b) => a + b, 0);
    t.true(written > 0 && written < shards, `the other masters took their shards' probe keys (${written} of ${shards})`);
    await masters[1]!.config('SET', 'maxmemory', '0');
    const freed = Date.now();
    while (full.isFull() && Date.now() - freed < 5000) await Post.findAll({ where: { views: Math.floor(Math.random() * 60) } });
    await full.probing;
    t.false(full.isFull(), `room again ${Date.now() - freed} ms after the limit was lifted`);
    t.is((await Promise.all(keys.map((k) => client.exists(k)))).reduce((a, b) => a + b, 0), shards, 'every shard took its probe key');
    t.deepEqual(logged.map((m) => m.split(':')[0]), ['Redis is full', 'Redis has room again'], logged.join(' | '));
    t.is(cacheops.core.store.breaker.outages, 0, 'a full master is no outage');
  } finally {
    await cacheops.close().catch(() => undefined);
    client.disconnect();
    await sequelize.close();
    await cluster.stop();
  }
});
