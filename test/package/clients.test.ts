/**
 * Every Redis client an application may hand in as `redis:` (ioredis 5 RESP2,
 * ioredis 6 RESP2 and RESP3, helpers/clients.ts) passes the near cache's
 * checks and the never-stale differential property, without and with the near
 * cache. A tracking that cannot deliver invalidations (what a RESP3 tracking
 * connection of ioredis 6 is) or that Redis refuses turns the near cache off
 * with one log line, and nothing read is stale (a refusal to a restricted
 * user is the permission check's to report: test/core/acl.test.ts).
 *
 *   FC_CLIENT_STEPS  differential steps per client and dialect, near cache off and on (default 150)
 */
import test from 'ava';
import IORedis6 from 'ioredis6';
import type { Model } from 'sequelize';
import { redisUrl } from '../helpers/env';
import { CLIENT_VARIANTS } from '../helpers/clients';
import { makeBlog } from '../helpers/models';
import { until } from '../helpers/near';
import { registerNearChecks } from '../helpers/near-checks';
import { startPrivateRedis } from '../helpers/private-redis';
import { registerDifferential } from '../never-stale/differential-run';

const STEPS = Number(process.env['FC_CLIENT_STEPS'] ?? 150);

for (const variant of CLIENT_VARIANTS) {
  registerNearChecks(__filename, `${variant.name}: `, variant.make);
  registerDifferential({ file: __filename, label: `${variant.name}: `, steps: () => STEPS, seeds: 1, client: variant.make });
}

const title = (m: Model | null): unknown => m?.get('title');

/** Reads, writes and reads again through a blog whose near cache is off: every read is fresh. */
async function neverStaleWithoutNear(blog: Awaited<ReturnType<typeof makeBlog>>): Promise<number> {
  const { Post, cacheops } = blog;
  const p = await Post.create({ title: 'v0' });
  const id = p.get('id') as number;
  for (let i = 1; i <= 5; i += 1) {
    await Post.findByPk(id);
    await Post.findByPk(id);
    await Post.update({ title: `v${i}` }, { where: { id } });
    if (title(await Post.findByPk(id)) !== `v${i}`) throw new Error(`stale after write ${i}`);
  }
  return cacheops.stats().hits;
}

test.serial('a tracking connection that never hears its invalidations (RESP3 on ioredis 6) turns the near cache off with one log line', async (t) => {
  // The application's client hands out RESP3 duplicates whatever it is asked: what tracking inherited before it pinned RESP2.
  const client = new IORedis6(redisUrl);
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (override) => duplicate({ ...override, protocol: 3 });
  const lines: string[] = [];
  const blog = await makeBlog('sqlite', __filename, { redis: client, profiles: { '*': { ops: 'all', near: true } }, logger: (m) => lines.push(m) }, 'clientsresp3');
  try {
    const tracker = blog.cacheops.core.near!.tracker;
    await until('the self-test', () => tracker.disabled !== undefined, 10_000);
    t.false(tracker.active);
    t.regex(tracker.disabled!, /did not deliver the self-test invalidation/);
    t.true(await neverStaleWithoutNear(blog) > 0, 'the Redis cache still serves hits');
    t.is(blog.cacheops.stats().nearHits, 0);
    await new Promise((r) => setTimeout(r, 1500)); // a heartbeat or two: nothing more is logged
    t.deepEqual(lines.filter((l) => l.startsWith('near cache')), [lines.find((l) => l.startsWith('near cache off:'))], lines.join('\n'));
  } finally {
    await blog.close();
    client.disconnect();
  }
});

test.serial('Redis refusing client tracking (no CLIENT command) turns the near cache off with one log line', async (t) => {
  // A server without CLIENT answers "unknown command": tracking cannot be set up at all.
  const redis = await startPrivateRedis(['--rename-command', 'CLIENT', '""']);
  const client = new IORedis6(redis.url);
  try {
    const lines: string[] = [];
    const blog = await makeBlog('sqlite', __filename, { redis: client, profiles: { '*': { ops: 'all', near: true } }, logger: (m) => lines.push(m) }, 'clientsnoclient');
    try {
      const tracker = blog.cacheops.core.near!.tracker;
      await until('the refusal', () => tracker.disabled !== undefined, 10_000);
      t.regex(tracker.disabled!, /refused client tracking/);
      t.true(await neverStaleWithoutNear(blog) > 0, 'the Redis cache still serves hits');
      await new Promise((r) => setTimeout(r, 1500)); // a heartbeat or two: nothing more is logged
      t.is(lines.filter((l) => l.startsWith('near cache')).length, 1, lines.join('\n'));
    } finally {
      await blog.close();
    }
  } finally {
    client.disconnect();
    await redis.stop();
  }
});
