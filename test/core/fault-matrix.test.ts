/**
 * The fault matrix: private Redis servers killed, frozen, restarted empty,
 * slowed down by a proxy (above redisTimeout: an outage; below it: a slow
 * Redis), filled up to maxmemory (noeviction), failed over by Sentinel, and a
 * Cluster node killed, each under
 * concurrent reads and writes with degradeOnFailure. Every scenario asserts
 * that the application saw no error, that no read is stale once Redis is
 * back, that caching resumed, and that the fault was logged once when it
 * began and once when it ended.
 *
 * The time bounds follow from what the scenario configured (redisTimeout, the
 * breaker's back-off ceiling, ioredis's reconnect ceiling, the slow-Redis
 * window) plus what it measured in the same run (the uncached reads' latency,
 * the event loop's delay), so a loaded machine cannot fail a correct library
 * while one that never resumes, or resumes only at a fixed late time, still fails.
 */
import test, { type ExecutionContext } from 'ava';
import type { Cluster } from 'ioredis';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { RedisConfig } from '../../src/index';
import { makeBlog } from '../helpers/models';
import { startPrivateRedis } from '../helpers/private-redis';
import { startPrivateCluster } from '../helpers/private-cluster';
import { DelayProxy, KEYS, fillRedis, p99, staleReads, startPrivateSentinel, startWorkload, unfillRedis } from '../helpers/faults';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const REDIS_TIMEOUT = 500;
const FAULT_MS = 1500;
/** The breaker's back-off ceilings (breaker.ts): an outage, a slow Redis. */
const OUTAGE_BACKOFF_MS = 5000;
const SLOW_BACKOFF_MS = 1000;
/** ioredis's default reconnect delay ceiling (retryStrategy: min(times * 50, 2000)). */
const RECONNECT_MS = 2000;
/** The outage recovery's retry interval of failed invalidations (outage.ts). */
const RETRY_MS = 500;
/** The slow-Redis window (slowRedis.windowMs, its default). */
const SLOW_WINDOW_MS = 1000;
/** Concurrent readers of the workload. */
const READERS = 4;
/** The writers' pause between two writes, ms. */
const WRITE_PAUSE_MS = 40;
/** The first probe interval of a full Redis (pressure.ts). */
const FULL_PROBE_MS = 250;

type Kind = 'outage' | 'slow' | 'full';

interface Fault {
  readonly redis: RedisConfig;
  /** Starts the fault. */
  inject(): Promise<void> | void;
  /** Ends it (or waits until the topology healed itself). */
  heal(): Promise<void> | void;
  teardown(): Promise<void>;
  /** How many outages the scenario may log (a cluster node's outage may be seen twice). */
  readonly maxOutages?: number;
  /** false: Redis is back at once (restarted empty); the reads meanwhile refill the cache rather than degrade. */
  readonly degradedReads?: boolean;
  /**
   * The read p99 allowed once the outage was met, on top of twice the uncached p99 (default
   * 10 ms). A cluster's outage may be met twice (maxOutages), each time by calls that wait up
   * to redisTimeout, so under load more than 1% of its reads can carry one such wait.
   */
  readonly slackMs?: number;
  /** 'slow': Redis answers, later than the database (below redisTimeout); 'full': it refuses to grow; default 'outage'. */
  readonly kind?: Kind;
  /** The time each Redis call gets slower by (slow faults), ms. */
  readonly addedMs?: number;
  readonly redisTimeout?: number;
  /** How long the fault lasts (default FAULT_MS). */
  readonly faultMs?: number;
  /** The client's connection drops and is made again (so its ready event comes when Redis is back). */
  readonly reconnects?: boolean;
}

const OPENED: Record<Kind, RegExp> = { outage: /^Redis unavailable/, slow: /^Redis is slow/, full: /^Redis is full/ };
const CLOSED: Record<Kind, RegExp> = { outage: /^Redis is back/, slow: /^Redis is fast again/, full: /^Redis has room again/ };

async function scenario(t: ExecutionContext, name: string, fault: Fault): Promise<void> {
  const kind = fault.kind ?? 'outage';
  const redisTimeout = fault.redisTimeout ?? REDIS_TIMEOUT;
  const logged: { at: number; message: string }[] = [];
  const blog = await makeBlog('sqlite', __filename, {
    redis: fault.redis, degradeOnFailure: true, redisTimeout, logger: (message) => logged.push({ at: Date.now(), message }),
  }, name);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  // Stopped in the finally block too: a scenario that throws must not leave its readers and writers running.
  let work: ReturnType<typeof startWorkload> | undefined;
  try {
    await blog.Post.bulkCreate(KEYS.flatMap((k) => [{ title: `a${k}`, views: k }, { title: `b${k}`, views: k }]));
    // When each miss's value was stored: under this workload's writes most stores race an invalidation
    // and are refused, so stores succeed at a pace the bounds below depend on.
    const stores: number[] = [];
    const onStore = (e: { stored: boolean }): void => { if (e.stored) stores.push(Date.now()); };
    blog.cacheops.on('read', onStore);
    const started = Date.now();
    // Writers pause WRITE_PAUSE_MS between writes: on 4 keys, faster writes race nearly every store
    // of a loaded machine's slow reads, and the first hit after recovery (a store, then a read)
    // would measure luck instead of the library (a Sentinel run at 10 ms resumed 8.4 s late).
    work = startWorkload(blog, { readers: READERS, writePauseMs: WRITE_PAUSE_MS });
    await sleep(1000);
    const injected = Date.now();
    await fault.inject();
    await sleep(fault.faultMs ?? FAULT_MS);
    await fault.heal();
    const healed = Date.now();
    // Resumed: the first cache hit after the fault ended.
    let resumedAt: number | undefined;
    const probe = (e: { hit: boolean }): void => { if (e.hit && resumedAt === undefined) resumedAt = Date.now(); };
    blog.cacheops.on('read', probe);
    for (let i = 0; i < 400 && resumedAt === undefined; i += 1) await sleep(50);
    blog.cacheops.off('read', probe);
    await sleep(500);
    blog.cacheops.off('read', onStore);
    const result = await work.stop();
    const stale = await staleReads(blog);
    loop.disable();

    const opened = logged.filter((l) => OPENED[kind].test(l.message));
    const closed = logged.filter((l) => CLOSED[kind].test(l.message));
    const openedAt = opened[0]?.at ?? Infinity;
    const closedAt = closed[closed.length - 1]?.at ?? Infinity;
    const during = result.latencies.filter((l) => l.at >= injected && l.at < healed).map((l) => l.ms);
    // Once the fault was met (an outage: the first calls wait up to redisTimeout; a slow Redis: once
    // it was detected), a read costs what the database costs.
    const metFrom = kind === 'outage' ? injected + redisTimeout + 100 : openedAt;
    const settled = result.latencies.filter((l) => l.at >= metFrom && l.at < healed).map((l) => l.ms);
    const base = p99(result.plain.filter((l) => l.at >= metFrom && l.at < healed).map((l) => l.ms));
    const plainMax = Math.max(...result.plain.map((l) => l.ms));
    const lag = loop.max / 1e6;
    const added = p99(settled) - base;
    const resume = resumedAt === undefined ? Infinity : (resumedAt - healed) / 1000;
    const before = [started, ...result.hits.filter((h) => h < injected), injected];
    const gap = Math.max(...before.slice(1).map((h, i) => h - before[i]!));
    const storedBefore = [started, ...stores.filter((s) => s < injected), injected];
    const storeGap = Math.max(...storedBefore.slice(1).map((s, i) => s - storedBefore[i]!));
    t.log(`${name}: ${result.reads} reads, ${result.writes} writes, ${result.errors.length} errors, ${stale} stale reads after recovery, ` +
      `read p99 meanwhile ${base.toFixed(1)} ms with cacheops: false, during the fault ${p99(during).toFixed(1)} ms (max ${Math.max(...during).toFixed(0)} ms), ` +
      `once met ${p99(settled).toFixed(1)} ms (${added >= 0 ? '+' : ''}${added.toFixed(1)} ms), ` +
      `log lines ${logged.length} (${opened.length} opened, ${closed.length} closed)` +
      `${kind === 'outage' ? '' : `, detected ${((openedAt - injected) / 1000).toFixed(2)} s after it began`}, ` +
      `resumed ${resume.toFixed(2)} s after the fault ended (closed after ${((closedAt - healed) / 1000).toFixed(2)} s; ` +
      `${((resumedAt ?? Infinity) - injected) / 1000} s after it began); event loop delay max ${lag.toFixed(0)} ms, slowest uncached read ${plainMax.toFixed(0)} ms, ` +
      `longest stretch without a hit before the fault ${gap} ms, without a store ${storeGap} ms`);
    t.deepEqual(result.errors, [], 'no error reached the application');
    t.is(stale, 0, 'no stale read after recovery');
    t.true(opened.length >= 1 && opened.length <= (fault.maxOutages ?? 1), `faults logged: ${logged.map((l) => l.message).join(' | ')}`);
    t.is(closed.length, opened.length, 'every fault logged as ended');
    t.is(logged.length, opened.length + closed.length, 'nothing else logged');
    // What the machine's load adds to any step below: the event loop's worst delay and the slowest
    // uncached read, both measured in this run.
    const load = lag + plainMax;
    // The breaker closes at its next probe: at once when the client reconnects (its ready event),
    // else at the next back-off step; a reconnect waits up to ioredis's ceiling; the probe takes
    // up to redisTimeout (a slow Redis's probe, three round trips).
    // A full Redis: the probe write (not a store, which a raced invalidation may refuse) sent by
    // the first store skipped after the probe interval finds room.
    const closeBound = (kind === 'slow' ? SLOW_BACKOFF_MS + 3 * redisTimeout
      : kind === 'full' ? FULL_PROBE_MS + redisTimeout
        : (fault.reconnects === true ? RECONNECT_MS : OUTAGE_BACKOFF_MS) + redisTimeout) + load;
    if (kind === 'full') t.is(blog.cacheops.core.store.breaker.outages, 0, 'a full Redis is no outage');
    t.true(closedAt - healed <= closeBound, `the breaker closed ${closedAt - healed} ms after the fault ended (bound ${closeBound.toFixed(0)} ms)`);
    // Then the failed invalidations are redone (a retry interval at most), and a miss, its store and a
    // hit follow: under this workload's writes a hit is not there at once even when nothing is wrong,
    // so the longest stretch without a hit before the fault (measured) is allowed three times: it is
    // the longest of one second's stretches, and the wait after recovery is another draw of the same
    // kind (a CI run at load saw 3.5 s against a measured stretch of 0.9 s; six runs of the killed
    // scenario on a quiet machine resumed 0.35-0.74 s after the fault ended, before and after the
    // src/ reorganization alike).
    const hitBound = RETRY_MS + redisTimeout + 3 * Math.max(gap, storeGap) + 2 * load;
    t.true(resumedAt !== undefined && resumedAt - Math.max(closedAt, healed) <= hitBound,
      `caching resumed ${resumedAt === undefined ? 'never' : `${resumedAt - Math.max(closedAt, healed)} ms`} after the breaker closed (bound ${hitBound.toFixed(0)} ms)`);
    if (kind === 'slow') {
      // Detected within two windows (the one the fault began in may be mostly fast), each read of which may take three slow round trips.
      const detectBound = 2 * SLOW_WINDOW_MS + 3 * (fault.addedMs ?? 0) + load;
      t.true(openedAt - injected <= detectBound, `detected ${openedAt - injected} ms after it began (bound ${detectBound.toFixed(0)} ms)`);
    }
    // A ratio too: the machine may be loaded (without the breaker each read would cost redisTimeout).
    // A full Redis still serves hits and answers a miss's GET: its reads may cost what cached reads
    // cost before the fault (measured), which is more than the database alone on a loaded machine.
    const normal = kind === 'full' ? p99(result.latencies.filter((l) => l.at < injected).map((l) => l.ms)) : 0;
    if (fault.degradedReads !== false) {
      t.true(settled.length > 0 && p99(settled) <= Math.max(base, normal) * 2 + (fault.slackMs ?? 10),
        `read p99 added once the fault was met: ${added.toFixed(1)} ms${kind === 'full' ? ` (cached reads before it: p99 ${normal.toFixed(1)} ms)` : ''}`);
    }
    t.true(Math.max(...during) < 2 * redisTimeout + base + load, `the slowest read during the fault: ${Math.max(...during).toFixed(0)} ms`);
  } finally {
    loop.disable();
    await work?.stop().catch(() => undefined);
    await blog.close().catch(() => undefined);
    await fault.teardown();
  }
}

test.serial('fault: Redis killed, down 1.5 s, started again', async (t) => {
  const redis = await startPrivateRedis();
  await scenario(t, 'killed', {
    redis: redis.url,
    inject: () => redis.stop(),
    heal: () => redis.start(),
    teardown: () => redis.stop(),
    reconnects: true,
  });
});

test.serial('fault: Redis frozen (SIGSTOP) 1.5 s', async (t) => {
  const redis = await startPrivateRedis();
  await scenario(t, 'frozen', {
    redis: redis.url,
    inject: () => redis.pause(),
    heal: () => redis.resume(),
    teardown: async () => { redis.resume(); await redis.stop(); },
  });
});

test.serial('fault: Redis restarted empty', async (t) => {
  const redis = await startPrivateRedis();
  await scenario(t, 'restarted', {
    redis: redis.url,
    inject: async () => { await redis.stop(); await redis.start(); },
    heal: () => undefined,
    degradedReads: false,
    teardown: () => redis.stop(),
    reconnects: true,
  });
});

test.serial('fault: latency above redisTimeout (a proxy holds every packet 800 ms)', async (t) => {
  const redis = await startPrivateRedis();
  const proxy = new DelayProxy();
  await proxy.start(redis.port);
  await scenario(t, 'latency', {
    redis: `redis://127.0.0.1:${proxy.port}`,
    inject: () => { proxy.delayMs = 800; },
    heal: () => { proxy.delayMs = 0; },
    teardown: async () => { await proxy.stop(); await redis.stop(); },
  });
});

test.serial('fault: Sentinel failover (master killed, replica promoted)', async (t) => {
  const sentinel = await startPrivateSentinel();
  await scenario(t, 'sentinel', {
    redis: { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: sentinel.name },
    inject: () => sentinel.master.stop(),
    heal: async () => {
      for (let i = 0; i < 200 && sentinel.masterPort() !== sentinel.replica.port; i += 1) await sleep(50);
      if (sentinel.masterPort() !== sentinel.replica.port) throw new Error('Sentinel did not fail over');
    },
    teardown: () => sentinel.stop(),
    reconnects: true,
  });
});

test.serial('fault: Redis Cluster node killed, started again', async (t) => {
  const cluster = await startPrivateCluster();
  const client: Cluster = cluster.client();
  client.on('error', () => undefined);
  await scenario(t, 'cluster', {
    redis: client,
    inject: () => cluster.kill(1),
    heal: () => cluster.restart(1),
    teardown: async () => { client.disconnect(); await cluster.stop(); },
    maxOutages: 2,
    slackMs: REDIS_TIMEOUT,
  });
});

for (const addedMs of [200, 50]) {
  test.serial(`fault: slow Redis (a proxy adds ${addedMs} ms to every call, below redisTimeout)`, async (t) => {
    const redis = await startPrivateRedis();
    const proxy = new DelayProxy();
    await proxy.start(redis.port);
    await scenario(t, `slow${addedMs}`, {
      redis: `redis://127.0.0.1:${proxy.port}`,
      kind: 'slow',
      addedMs,
      redisTimeout: 1000,
      faultMs: 4000,
      // Half each way: a call (request and answer) is `addedMs` slower.
      inject: () => { proxy.delayMs = addedMs / 2; },
      heal: () => { proxy.delayMs = 0; },
      teardown: async () => { await proxy.stop(); await redis.stop(); },
    });
  });
}

test.serial('fault: Redis full (maxmemory reached, noeviction), then memory freed', async (t) => {
  const redis = await startPrivateRedis(['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction']);
  let filler: string[] = [];
  await scenario(t, 'full', {
    redis: redis.url,
    kind: 'full',
    inject: async () => { filler = await fillRedis(redis.url); },
    heal: () => unfillRedis(redis.url, filler),
    teardown: () => redis.stop(),
  });
});
