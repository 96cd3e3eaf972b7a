/**
 * The peer of the two-process near cache differential test (forked by
 * differential-processes.test.ts, run with `node --import tsx`): its own
 * Sequelize and Redis connections on the parent's database and key prefix,
 * the near cache on for every model. It never writes. On each `check` it
 * waits until its near cache applied every invalidation message Redis sent
 * so far (the parent's write has returned by then), then runs each read
 * twice through the cache, so the second one can be a near hit.
 */
import { installCacheops } from '../../src/index';
import { redisUrl } from '../helpers/env';
import { defineModels } from './schema';
import { runSpec, type PeerConfig, type PeerReply, type PeerRequest } from './near-peer';
import { openShared, runChild, sendToParent, sleep } from './stress-shared';

const send = (message: PeerReply): Promise<void> => sendToParent(message);

async function main(config: PeerConfig): Promise<void> {
  const sequelize = await openShared(config);
  const m = defineModels(sequelize);
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl,
    prefix: config.prefix,
    profiles: { '*': { ops: 'all', near: true } },
    maxInListLength: config.maxInListLength,
    redisTimeout: 10_000,
  });
  for (let i = 0; cacheops.core.near?.tracker.active !== true; i += 1) {
    if (i > 2000) throw new Error('near cache tracking did not come up');
    await sleep(5);
  }
  let reads = 0;
  // One request at a time, in order (the parent waits for each answer anyway).
  let queue = Promise.resolve();
  const stopped = new Promise<void>((resolve) => {
    process.on('message', (msg: PeerRequest) => {
      if (msg.type === 'stop') { queue = queue.then(resolve); return; }
      queue = queue.then(async () => {
        try {
          await cacheops.core.near!.tracker.barrier();
          const results: (readonly [string, string])[] = [];
          for (const spec of msg.reads) {
            results.push([await runSpec(m, spec, true), await runSpec(m, spec, true)]);
            reads += 2;
          }
          await send({ type: 'checked', seq: msg.seq, results, reads, nearHits: cacheops.stats().nearHits });
        } catch (error) {
          await send({ type: 'error', seq: msg.seq, message: (error as Error).stack ?? String(error) });
        }
      });
    });
  });
  await send({ type: 'ready' });
  await stopped;
  await cacheops.close();
  await sequelize.close();
}

runChild(main);
