/**
 * The fault matrix: private Redis servers killed, frozen, restarted empty,
 * slowed down by a proxy, failed over by Sentinel, and a Cluster node
 * killed, each under concurrent reads and writes with degradeOnFailure.
 * Every scenario asserts that the application saw no error, that no read is
 * stale once Redis is back, that caching resumed within a few seconds, and
 * that the outage was logged once when it began and once when it ended.
 */
import test, { type ExecutionContext } from 'ava';
import type { Cluster } from 'ioredis';
import type { RedisConfig } from '../src/index';
import { makeBlog } from './helpers/models';
import { startPrivateRedis } from './helpers/private-redis';
import { startPrivateCluster } from './helpers/private-cluster';
import { DelayProxy, KEYS, p99, staleReads, startPrivateSentinel, startWorkload } from './helpers/faults';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const REDIS_TIMEOUT = 500;
const FAULT_MS = 1500;

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
}

async function scenario(t: ExecutionContext, name: string, fault: Fault): Promise<void> {
  const logged: string[] = [];
  const blog = await makeBlog('sqlite', __filename, {
    redis: fault.redis, degradeOnFailure: true, redisTimeout: REDIS_TIMEOUT, logger: (m) => logged.push(m),
  }, name);
  try {
    await blog.Post.bulkCreate(KEYS.flatMap((k) => [{ title: `a${k}`, views: k }, { title: `b${k}`, views: k }]));
    const work = startWorkload(blog);
    await sleep(500);
    const injected = Date.now();
    await fault.inject();
    await sleep(FAULT_MS);
    await fault.heal();
    const healed = Date.now();
    // Resumed: the first cache hit after the fault ended.
    let resumedAt: number | undefined;
    const probe = (e: { hit: boolean }): void => { if (e.hit && resumedAt === undefined) resumedAt = Date.now(); };
    blog.cacheops.on('read', probe);
    for (let i = 0; i < 200 && resumedAt === undefined; i += 1) await sleep(50);
    blog.cacheops.off('read', probe);
    await sleep(500);
    const result = await work.stop();
    const stale = await staleReads(blog);

    const during = result.latencies.filter((l) => l.at >= injected && l.at < healed).map((l) => l.ms);
    // Once the outage was met (the first calls wait up to redisTimeout), a read costs what the database costs.
    const settled = result.latencies.filter((l) => l.at >= injected + REDIS_TIMEOUT + 100 && l.at < healed).map((l) => l.ms);
    const base = p99(result.plain.filter((l) => l.at >= injected + REDIS_TIMEOUT + 100 && l.at < healed).map((l) => l.ms));
    const added = p99(settled) - base;
    const opened = logged.filter((m) => m.startsWith('Redis unavailable')).length;
    const closed = logged.filter((m) => m.startsWith('Redis is back')).length;
    const resume = resumedAt === undefined ? Infinity : (resumedAt - healed) / 1000;
    t.log(`${name}: ${result.reads} reads, ${result.writes} writes, ${result.errors.length} errors, ${stale} stale reads after recovery, ` +
      `read p99 meanwhile ${base.toFixed(1)} ms with cacheops: false, during the fault ${p99(during).toFixed(1)} ms (max ${Math.max(...during).toFixed(0)} ms), ` +
      `once met ${p99(settled).toFixed(1)} ms (${added >= 0 ? '+' : ''}${added.toFixed(1)} ms), ` +
      `log lines ${logged.length} (${opened} opened, ${closed} closed), resumed ${resume.toFixed(2)} s after the fault ended ` +
      `(${((resumedAt ?? Infinity) - injected) / 1000} s after it began)`);
    t.deepEqual(result.errors, [], 'no error reached the application');
    t.is(stale, 0, 'no stale read after recovery');
    t.true(resume < 8, `caching resumed (${resume} s)`);
    t.true(opened >= 1 && opened <= (fault.maxOutages ?? 1), `outages logged: ${logged.join(' | ')}`);
    t.is(closed, opened, 'every outage logged as ended');
    t.is(logged.length, opened + closed, 'nothing else logged');
    // A ratio too: the machine may be loaded (without the breaker each read would cost redisTimeout).
    if (fault.degradedReads !== false) t.true(settled.length > 0 && p99(settled) <= base * 2 + (fault.slackMs ?? 10), `read p99 added once the outage was met: ${added.toFixed(1)} ms`);
    t.true(Math.max(...during) < 2 * REDIS_TIMEOUT + base + 100, `the slowest read during the fault: ${Math.max(...during).toFixed(0)} ms`);
  } finally {
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
