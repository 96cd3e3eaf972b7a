/**
 * One process of the stress test (forked by stress-harness.ts, run with
 * `node --import tsx`). It opens the shared database and the shared cache
 * prefix, says `ready`, and on `go` runs a few concurrent loops of random
 * reads and writes on the hot rows until the deadline. It then reports its
 * counters and every read it ran (as descriptions) and exits.
 */
import { Transaction } from 'sequelize';
import { installCacheops } from '../../src/index';
import { redisUrl } from '../helpers/env';
import { defineBlog } from '../helpers/models';
import { openShared, runChild, sendToParent, sleep, type SamplerResult, type WorkerConfig, type WorkerMessage, type WorkerResult } from './stress-shared';
import type { StaleEvent } from '../../src/index';
import { STREAM_WAITED_EVENT, StreamWaits, type WaitOutcome } from '../../src/write/stream-wait';
import { WRITES, pick, randomRead, rng, runRead, type ReadDescription } from './stress-catalog';

const send = (message: WorkerMessage): Promise<void> => sendToParent(message);

async function main(config: WorkerConfig): Promise<void> {
  const sequelize = await openShared(config);
  const m = defineBlog(sequelize);
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl,
    prefix: config.prefix,
    raceProtection: config.raceProtection,
    profiles: { Category: { ops: 'all', lock: true, near: config.near }, '*': { ops: 'all', near: config.near } },
    verifySampleRate: config.near ? 1 : 0,
    ...(config.stream ? { writes: 'stream' as const, changeStream: config.stream.changeStream, logger: () => undefined } : {}),
  });
  const waits: Record<WaitOutcome, number> = { done: 0, timeout: 0 };
  if (config.stream) {
    cacheops.core.events.on(STREAM_WAITED_EVENT, (w: { outcome: WaitOutcome }) => { waits[w.outcome] += 1; });
    if (config.stream.skipWait) StreamWaits.prototype.wait = () => Promise.resolve('done');
    await cacheops.changeStreamReady();
  }
  const stale: StaleEvent[] = [];
  cacheops.on('stale', (e) => stale.push(e));
  if (config.near) {
    while (cacheops.core.near?.tracker.active !== true) await sleep(5);
  }
  if (config.readDelayMs > 0) {
    // Widens the race window: a read outside a transaction waits after the database answered, before its store.
    sequelize.addHook('afterQuery', async (options: { type?: string; transaction?: unknown }) => {
      if (options.type === 'SELECT' && !options.transaction) await sleep(config.readDelayMs);
    });
  }
  const descriptions = new Map<string, ReadDescription>();
  const result = { reads: 0, writes: 0, failedWrites: {} as Record<string, number>, writeKinds: {} as Record<string, number> };
  const writeNames = Object.keys(WRITES);
  const loop = async (seed: number, start: number, until: number): Promise<void> => {
    const r = rng(seed);
    // Over the last third of the run writes thin out to none: the last writes of the run are each
    // surrounded by many reads, whose stores race them, and what they leave cached is what the check sees.
    const tail = (until - start) / 3;
    for (let now = Date.now(); now < until; now = Date.now()) {
      const writeShare = (1 - config.readShare) * Math.min(1, (until - now) / tail);
      if (r() >= writeShare) {
        const d = randomRead(r);
        descriptions.set(JSON.stringify(d), d);
        await runRead(m, d);
        result.reads += 1;
        continue;
      }
      const name = pick(r, writeNames);
      const write = WRITES[name]!;
      const inTransaction = config.dialect === 'sqlite' ? config.sqliteTransactions : r() < 0.5;
      try {
        if (inTransaction) {
          // SQLite: IMMEDIATE takes the write lock at BEGIN, so the pre-read and the write see the same rows.
          const type = config.dialect === 'sqlite' ? Transaction.TYPES.IMMEDIATE : Transaction.TYPES.DEFERRED;
          await sequelize.transaction({ type }, (transaction) => write({ m, r, transaction }));
        } else {
          await write({ m, r, transaction: undefined });
        }
        result.writes += 1;
        result.writeKinds[name] = (result.writeKinds[name] ?? 0) + 1;
      } catch (error) {
        // Deadlocks, lock timeouts and constraint conflicts are the database's answer to the contention we create;
        // anything else (a cache error above all) is a failure of the test.
        const e = error as { name?: string; parent?: { code?: string } };
        if (!e.name?.startsWith('Sequelize')) throw error;
        const key = `${name}: ${e.name}${e.parent?.code ? ` ${e.parent.code}` : ''}`;
        result.failedWrites[key] = (result.failedWrites[key] ?? 0) + 1;
      }
    }
  };

  let verify: () => void = () => undefined;
  const verifying = new Promise<void>((resolve) => { verify = resolve; });
  await send({ type: 'ready' });
  const until = await new Promise<number>((resolve) => {
    process.on('message', (msg: WorkerMessage) => {
      if (msg.type === 'go') resolve(msg.until);
      else if (msg.type === 'verify') verify();
    });
  });
  const started = Date.now();
  await Promise.all(Array.from({ length: config.loops }, (_, i) => loop(config.seed * 100 + i, started, until)));
  let sampler: SamplerResult | undefined;
  if (config.stream && !config.near) {
    // The consumer may be in this process: it stays until every worker's writes are resolved.
    await send({ type: 'done' });
    await verifying;
  }
  if (config.near) {
    await cacheops.core.sampler.idle();
    const during = { ...cacheops.stats() };
    const running = stale.splice(0);
    // Quiescence: every worker has stopped writing. Once this near cache applied every
    // invalidation message sent so far, a replay of every read must find nothing stale.
    await send({ type: 'done' });
    await verifying;
    await cacheops.core.near!.tracker.barrier();
    for (let pass = 0; pass < 3; pass += 1) for (const d of descriptions.values()) await runRead(m, d);
    await cacheops.core.sampler.idle();
    const after = cacheops.stats();
    const tiers: Record<string, number> = {};
    for (const e of running) tiers[e.tier] = (tiers[e.tier] ?? 0) + 1;
    sampler = {
      checks: during.checks, stale: running.length, staleAges: running.map((e) => e.age), staleTiers: tiers,
      quiescentChecks: after.checks - during.checks, quiescentStale: after.stale - during.stale, nearHits: after.nearHits,
    };
  }
  const stats = cacheops.stats();
  const final: WorkerResult = {
    id: config.id, pid: process.pid, ...result,
    hits: stats.hits, misses: stats.misses, stores: stats.stores, refusedStores: stats.refusedStores,
    invalidations: stats.invalidations, durationMs: Date.now() - started, descriptions: [...descriptions.values()],
    ...(sampler ? { sampler } : {}),
    ...(config.stream ? { stream: { role: stats.changeStream.role, ...waits } } : {}),
  };
  await send({ type: 'result', result: final });
  await cacheops.close();
  await sequelize.close();
}

runChild(main);
