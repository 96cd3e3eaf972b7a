/**
 * The near cache's checks, registered for a Redis client (test/near/near.test.ts:
 * cacheops's own; test/package/clients.test.ts: each client an application may hand
 * in): hits from process memory, kept true by Redis client tracking across
 * installations (processes); own writes clear it before they resolve; a lost
 * tracking connection flushes and bypasses it.
 */
import test from 'ava';
import type { Model } from 'sequelize';
import type { Cacheops } from '../../src/index';
import { countSql, dialects, rawRedis } from './env';
import { makePair, nearReady, until, type ClientFactory } from './near';

const title = (m: Model | null): unknown => m?.get('title');

/**
 * Reads until the read is served from the near cache. Two reads are not always
 * enough: the first one's miss stores the value, and the invalidation message
 * that store sends (the miss's tracked read had found the key absent) can
 * arrive while the second read is in flight, which then is not admitted.
 */
export async function warm(cacheops: Cacheops, read: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 10; i += 1) {
    const before = cacheops.stats().nearHits;
    await read();
    if (cacheops.stats().nearHits > before) return;
  }
  throw new Error('the read never came from the near cache');
}

/** Kills one tracking connection of an installation (test/near/near-cluster.test.ts: on every master). */
export type KillTracking = (cacheops: Cacheops, victim: 'subscriber' | 'reader') => Promise<void>;

/** On the shared Redis, by the connection's client id. */
const killOnSharedRedis: KillTracking = async (cacheops, victim) => {
  const tracker = cacheops.core.near!.tracker;
  if (!('subscriberId' in tracker)) throw new Error('a cluster tracker: pass a KillTracking');
  const id = victim === 'subscriber' ? tracker.subscriberId : tracker.readerId;
  if (id === undefined) throw new Error(`no ${victim} id`);
  const raw = rawRedis();
  try {
    await raw.client('KILL', 'ID', id);
  } finally {
    raw.disconnect();
  }
};

/** Registers the checks; `label` starts their titles, `file` names their databases. */
export function registerNearChecks(file: string, label: string, client?: ClientFactory, kill: KillTracking = killOnSharedRedis): void {
  for (const dialect of dialects()) {
    for (const insideout of [false, true]) {
      const mode = insideout ? ' (insideout)' : '';

      test.serial(`${label}${dialect}${mode}: a near hit runs no SQL and no Redis call, and returns fresh instances`, async (t) => {
        const pair = await makePair(dialect, file, { insideout }, 'nearhit', client);
        try {
          const { Post, sequelize, cacheops } = pair.a;
          const p = await Post.create({ title: 'near', views: 1, meta: { tags: ['a'] } });
          const id = p.get('id') as number;
          await warm(cacheops, () => Post.findByPk(id));
          const before = cacheops.stats();
          const redis = cacheops.core.near!.tracker;
          const messagesBefore = redis.messages;
          const hit = await countSql(sequelize, () => Post.findByPk(id));
          t.is(hit.sql.length, 0);
          t.is(cacheops.stats().nearHits - before.nearHits, 1, 'served from the near cache');
          t.is(cacheops.stats().hits - before.hits, 1, 'counted as a hit too');
          t.is(redis.messages, messagesBefore);
          const again = await Post.findByPk(id);
          t.not(again, hit.result, 'a new instance per hit');
          (hit.result as Model).set('title', 'mutated locally');
          ((hit.result as Model).get('meta') as { tags: string[] }).tags.push('x');
          t.is(title(again), 'near');
          const third = await Post.findByPk(id);
          t.is(title(third), 'near', 'mutating a returned instance changes nothing cached');
          t.deepEqual(third!.get('meta'), { tags: ['a'] });
          t.false(third!.changed());
          t.false(third!.isNewRecord);
        } finally {
          await pair.close();
        }
      });

      test.serial(`${label}${dialect}${mode}: a process reading its own write never sees the old value`, async (t) => {
        const pair = await makePair(dialect, file, { insideout }, 'nearown', client);
        try {
          const { Post, cacheops } = pair.a;
          const p = await Post.create({ title: 'v0', views: 1 });
          const id = p.get('id') as number;
          const list = () => Post.findAll({ where: { views: 1 }, order: [['id', 'ASC']] });
          for (let i = 1; i <= 20; i += 1) {
            await warm(cacheops, () => Post.findByPk(id));
            await warm(cacheops, list);
            t.is(title(await Post.findByPk(id)), `v${i - 1}`);
            // Each kind of write, in turn; the read right after must see it.
            if (i % 4 === 0) await Post.update({ title: `v${i}` }, { where: { id } });
            else if (i % 4 === 1) await p.update({ title: `v${i}` });
            else if (i % 4 === 2) await pair.a.sequelize.query(`UPDATE ${pair.a.sequelize.getQueryInterface().quoteIdentifier('Posts')} SET title = 'v${i}' WHERE id = ${id}`);
            else await pair.a.sequelize.transaction(async (transaction) => { await Post.update({ title: `v${i}` }, { where: { id }, transaction }); });
            t.is(title(await Post.findByPk(id)), `v${i}`, `findByPk after write ${i}`);
            t.is(title((await list())[0] ?? null), `v${i}`, `findAll after write ${i}`);
          }
          t.true(cacheops.stats().nearHits > 0);
        } finally {
          await pair.close();
        }
      });

      test.serial(`${label}${dialect}${mode}: an invalidation in another process reaches this near cache (delay measured)`, async (t) => {
        const pair = await makePair(dialect, file, { insideout }, 'nearx', client);
        try {
          const { a, b } = pair;
          const p = await a.Post.create({ title: 'x0', views: 2 });
          const id = p.get('id') as number;
          const delays: number[] = [];
          const calls: number[] = [];
          const kinds = ['row', 'model', 'all', 'dict'] as const;
          for (let i = 1; i <= 24; i += 1) {
            await warm(a.cacheops, () => a.Post.findByPk(id));
            const near = a.cacheops.stats().nearHits;
            t.is(title(await a.Post.findByPk(id)), `x${i - 1}`);
            t.is(a.cacheops.stats().nearHits, near + 1, 'held in A\'s near cache');
            const kind = kinds[i % kinds.length]!;
            // B writes to the database without invalidating, then invalidates in one of four ways.
            await b.Post.update({ title: `x${i}` }, { where: { id }, cacheops: { invalidate: false } });
            const row = await b.Post.findByPk(id, { cacheops: false });
            const cache = a.cacheops.core.near!;
            const entries = cache.entries;
            const start = process.hrtime.bigint();
            if (kind === 'row') await b.cacheops.invalidateObj(row!);
            else if (kind === 'model') await b.cacheops.invalidateModel(b.Post);
            else if (kind === 'all') await b.cacheops.invalidateAll();
            else await b.cacheops.invalidateDict(b.Post, { id });
            calls.push(Number(process.hrtime.bigint() - start) / 1000);
            // From the start of B's invalidation until A's near cache applied the message that dropped the entry.
            await until('the invalidation message', () => cache.entries < entries, 2000);
            delays.push(Number(cache.tracker.lastMessageAt - start) / 1000);
            t.is(title(await a.Post.findByPk(id)), `x${i}`, `A sees B's write ${i} (${kind})`);
          }
          const med = (xs: number[]): string => [...xs].sort((x, y) => x - y)[xs.length >> 1]!.toFixed(0);
          t.log(`${dialect}${mode}: from the start of B's invalidation to A's near cache dropping the entry: median ${med(delays)} µs, `
            + `max ${Math.max(...delays).toFixed(0)} µs (B's invalidation call itself: median ${med(calls)} µs)`);
        } finally {
          await pair.close();
        }
      });
    }

    test.serial(`${label}${dialect}: a lost tracking connection flushes and bypasses the near cache until it is back`, async (t) => {
      const warnings: string[] = [];
      const pair = await makePair(dialect, file, { logger: (message) => warnings.push(message) }, 'neardrop', client);
      try {
        const { a, b } = pair;
        const p = await a.Post.create({ title: 'd0', views: 0 });
        const id = p.get('id') as number;
        for (const victim of ['subscriber', 'reader'] as const) {
          await warm(a.cacheops, () => a.Post.findByPk(id));
          const tracker = a.cacheops.core.near!.tracker;
          t.true(a.cacheops.core.near!.entries > 0);
          await kill(a.cacheops, victim);
          await until('tracking to notice the drop', () => !tracker.active);
          t.true(warnings.some((w) => w.includes('tracking connection lost')));
          t.is(a.cacheops.core.near!.entries, 0, `${victim} lost: flushed`);
          // Meanwhile B writes: A must not serve the old value from memory.
          await b.Post.update({ title: `after ${victim}` }, { where: { id } });
          const near = a.cacheops.stats().nearHits;
          t.is(title(await a.Post.findByPk(id)), `after ${victim}`);
          t.is(a.cacheops.stats().nearHits, near);
          await nearReady(a.cacheops);
          await warm(a.cacheops, () => a.Post.findByPk(id));
          t.is(title(await a.Post.findByPk(id)), `after ${victim}`);
          t.true(a.cacheops.stats().nearHits > near, 'near hits again once tracking is back');
          await b.Post.update({ title: `again ${victim}` }, { where: { id } });
          await until('B\'s invalidation', async () => title(await a.Post.findByPk(id)) === `again ${victim}`, 2000);
        }
      } finally {
        await pair.close();
      }
    });
  }
}
