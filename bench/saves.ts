/**
 * Section 2: what a `post.save()` costs with few and with very many unrelated
 * cached queries, and how many Redis commands its invalidation sends.
 *
 * Two installations (own prefixes) hold the same rows: one with 100 unrelated
 * cached queries, one with 100,000. Saves alternate between them, so both are
 * measured under the same conditions. "Unrelated" = queries whose conditions
 * the saved row cannot match: Post where views = 1,000,000 + i (no row has such
 * views) and Category where name = 'none-i'. They are filled by running those
 * queries through the cache (real misses, real stores), many in flight at once.
 */
import type { Model } from 'sequelize';
import type { Cacheops } from 'sequelize-cacheops';
import type { BenchModels } from './models';
import { countCommands, type CommandLog } from './redis-probe';
import { inParallel, interleave, median } from './measure';
import type IORedis from 'ioredis';

export interface Installation {
  readonly cacheops: Cacheops;
  readonly models: BenchModels;
}

export interface SaveResult {
  readonly small: number;
  readonly large: number;
  /** invalidateObj alone (the Redis part of a save). */
  readonly invalidateSmall: number;
  readonly invalidateLarge: number;
  readonly commandsSmall: CommandLog;
  readonly commandsLarge: CommandLog;
  readonly samples: number;
  readonly fillSeconds: number;
}

const unrelated = (models: BenchModels, i: number): Promise<unknown> => (i % 10 === 9
  ? models.Category.findAll({ where: { name: `none-${i}` } })
  : models.Post.findAll({ where: { views: 1_000_000 + i } }));

/** Caches `count` unrelated queries through the library; checks that each was stored. */
export async function fillUnrelated(inst: Installation, count: number, concurrency = 64): Promise<number> {
  const start = process.hrtime.bigint();
  const before = inst.cacheops.stats().stores;
  await inParallel(count, concurrency, (i) => unrelated(inst.models, i));
  const stored = inst.cacheops.stats().stores - before;
  if (stored !== count) throw new Error(`filled ${stored} cached queries, expected ${count}`);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Some of the unrelated queries must still be hits after the saves (they were unrelated indeed). */
async function checkStillCached(inst: Installation, count: number): Promise<void> {
  const before = inst.cacheops.stats();
  const probes = [0, 1, 9, Math.floor(count / 2), count - 1];
  for (const i of probes) await unrelated(inst.models, i);
  const after = inst.cacheops.stats();
  if (after.hits - before.hits !== probes.length) throw new Error('a save invalidated unrelated cached queries');
}

export async function measureSaves(
  small: Installation,
  large: Installation,
  options: { iterations: number; largeCount: number; smallCount: number; postId: number },
): Promise<SaveResult> {
  await fillUnrelated(small, options.smallCount);
  const fillSeconds = await fillUnrelated(large, options.largeCount);
  const load = async (inst: Installation): Promise<Model> => {
    const post = await inst.models.Post.findByPk(options.postId, { cacheops: false } as never);
    if (!post) throw new Error(`post ${options.postId} not found`);
    return post;
  };
  const postSmall = await load(small);
  const postLarge = await load(large);
  let n = 0;
  const save = async (post: Model): Promise<void> => {
    post.set('title', `Saved title ${process.pid}-${(n += 1)}`);
    await post.save();
  };
  const invalidate = (inst: Installation, post: Model) => () => inst.cacheops.invalidateObj(post);

  const warmup = Math.max(20, Math.floor(options.iterations / 10));
  const saves = await interleave({ small: () => save(postSmall), large: () => save(postLarge) }, options.iterations, warmup);
  const invalidations = await interleave({ small: invalidate(small, postSmall), large: invalidate(large, postLarge) }, options.iterations, warmup);

  const commandsSmall = await countCommands(small.cacheops.core.redis as IORedis, () => save(postSmall));
  const commandsLarge = await countCommands(large.cacheops.core.redis as IORedis, () => save(postLarge));
  await checkStillCached(small, options.smallCount);
  await checkStillCached(large, options.largeCount);
  return {
    small: median(saves.small),
    large: median(saves.large),
    invalidateSmall: median(invalidations.small),
    invalidateLarge: median(invalidations.large),
    commandsSmall,
    commandsLarge,
    samples: options.iterations,
    fillSeconds,
  };
}
