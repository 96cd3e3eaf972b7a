/**
 * Stale-while-revalidate (`staleWhileRevalidate` profile option): past its
 * timeout, within the window, a value is served stale exactly while one caller
 * refreshes it (N concurrent readers, one query), and a failed refresh gives
 * its lease back; after the window it is a
 * plain miss; after an invalidation of any kind it is never served (a
 * property over invalidation kinds, query shapes, readers and a refresh in
 * flight that raced the invalidation, in plain, insideout and near modes);
 * without the option values carry no header and live their timeout.
 *
 * Data are changed behind the cache's back (noInvalidation) where the test
 * needs a stale value to differ from the database: then serving it stale is
 * visible, and only the timeout can end it, as for an untracked write.
 */
import test from 'ava';
import fc from 'fast-check';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import type { Cacheops, CacheopsConfig } from '../../src/index';
import { dialects, type Dialect } from '../helpers/env';
import { makeBlog, type Blog } from '../helpers/models';
import { nearReady } from '../helpers/near';
import { readFreshness } from '../../src/core/freshness';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Counts SELECTs of posts and can hold the next one after it has read (so it races what follows), or fail it. */
function watchSelects(sequelize: Sequelize) {
  let selects = 0;
  let armed: { entered: () => void; released: Promise<void> } | undefined;
  let failNext = false;
  const releases: (() => void)[] = [];
  // Only reads of posts: PostgreSQL runs SELECTs of its own on a new pool connection (type parsers).
  const ofPosts = (options: { type?: string; model?: { name?: string } }): boolean => options.type === 'SELECT' && options.model?.name === 'Post';
  // A failure is thrown before the query runs: a throwing afterQuery hook would leak its pool connection.
  sequelize.addHook('beforeQuery', (options: object) => {
    if (!ofPosts(options) || !failNext) return;
    failNext = false;
    throw new Error('the database failed');
  });
  sequelize.addHook('afterQuery', async (options: object) => {
    if (!ofPosts(options)) return;
    selects += 1;
    const hold = armed;
    if (!hold) return;
    armed = undefined;
    hold.entered();
    await hold.released;
  });
  return {
    get selects(): number {
      return selects;
    },
    /** The next SELECT (it has read when `entered` resolves) waits for `release()`. */
    hold(): { entered: Promise<void>; release: () => void } {
      let entered: () => void = () => undefined;
      let release: () => void = () => undefined;
      const enteredP = new Promise<void>((r) => { entered = r; });
      const released = new Promise<void>((r) => { release = r; });
      armed = { entered, released };
      releases.push(release);
      return { entered: enteredP, release };
    },
    /** The next SELECT fails. */
    failNext(): void {
      failNext = true;
    },
    /** Lets every held query go (a failed test must not keep a connection from closing). */
    releaseAll(): void {
      armed = undefined;
      for (const r of releases) r();
    },
  };
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const titleOf = (m: unknown): unknown => (m as Model | null)?.get('title') ?? null;
const titlesOf = (rows: unknown): string => (rows as Model[]).map((r) => r.get('title')).join(',');

type Mode = 'plain' | 'insideout' | 'near';
const MODES: readonly Mode[] = ['plain', 'insideout', 'near'];

async function open(dialect: Dialect, mode: Mode, profile: Record<string, unknown>, label: string): Promise<Blog> {
  const config: Partial<CacheopsConfig> = {
    ...(mode === 'insideout' ? { insideout: true } : {}),
    profiles: { '*': { ops: 'all', ...profile, ...(mode === 'near' ? { near: true } : {}) } },
  };
  const blog = await makeBlog(dialect, __filename, config, label);
  if (mode === 'near') await nearReady(blog.cacheops);
  return blog;
}

/** Changes a post's title without invalidating anything. */
const silently = (cacheops: Cacheops, Post: ModelStatic<Model>, id: number, title: string): Promise<unknown> =>
  cacheops.noInvalidation(() => Post.update({ title }, { where: { id } }));

for (const dialect of dialects()) {
  for (const mode of MODES) {
    const label = `${dialect} ${mode}`;

    test.serial(`${label}: past its timeout a value is served stale exactly while one refresh runs (N readers, 1 query), then fresh`, async (t) => {
      const blog = await open(dialect, mode, { timeout: 1, staleWhileRevalidate: 30 }, 'swrserve');
      const db = watchSelects(blog.sequelize);
      try {
        const { Post, cacheops } = blog;
        const id = (await Post.create({ title: 'old' })).get('id') as number;
        t.is(titleOf(await Post.findByPk(id)), 'old');
        await silently(cacheops, Post, id, 'new');
        const started = db.selects;
        t.is(titleOf(await Post.findByPk(id)), 'old', 'fresh: a hit');
        t.is(db.selects, started);
        await sleep(1100);

        const hold = db.hold();
        const N = 12;
        const done: unknown[] = [];
        const reads = Array.from({ length: N }, () => Post.findByPk(id).then((r) => { done.push(titleOf(r)); return r; }));
        await hold.entered;
        await until('every reader but the refresher', () => done.length === N - 1);
        t.deepEqual(done, Array.from({ length: N - 1 }, () => 'old'), 'the others were served the stale value');
        const before = cacheops.stats();
        t.is(titleOf(await Post.findByPk(id)), 'old', 'a later reader too, while the refresh runs');
        t.is(cacheops.stats().staleHits - before.staleHits, 1);
        t.is(db.selects - started, 1, 'one query: the refresher\'s');
        hold.release();
        const results = (await Promise.all(reads)).map(titleOf);
        t.is(results.filter((x) => x === 'new').length, 1, 'the refresher returns what it read');
        t.is(cacheops.stats().staleHits, N, 'N - 1 concurrent and one later stale hit');
        const after = db.selects;
        t.is(titleOf(await Post.findByPk(id)), 'new', 'then the refreshed value, fresh');
        t.is(titleOf(await Post.findByPk(id)), 'new');
        t.is(db.selects, after, 'from the cache');
        t.is(cacheops.stats().staleHits, N);

        // A refresh whose query fails gives its lease back: the next reader refreshes, nobody gets stale.
        await silently(cacheops, Post, id, 'newer');
        await sleep(1100);
        db.failNext();
        await t.throwsAsync(Post.findByPk(id), { message: 'the database failed' });
        t.is(titleOf(await Post.findByPk(id)), 'newer', 'the next reader refreshed');
        t.is(cacheops.stats().staleHits, N);
      } finally {
        db.releaseAll();
        await blog.close();
      }
    });

    test.serial(`${label}: past the window it is not served; once the key expired, a plain miss`, async (t) => {
      const blog = await open(dialect, mode, { timeout: 0.2, staleWhileRevalidate: 1.1 }, 'swrwindow');
      const db = watchSelects(blog.sequelize);
      try {
        const { Post, cacheops } = blog;
        const id = (await Post.create({ title: 'old' })).get('id') as number;
        await Post.findByPk(id);
        await silently(cacheops, Post, id, 'new');
        // Past timeout + window (1.3 s) but before the key's whole-second TTL (2 s) ends: not
        // served, even while another caller refreshes it.
        await sleep(1400);
        const hold = db.hold();
        const refresher = Post.findByPk(id);
        await hold.entered;
        const before = db.selects;
        t.is(titleOf(await Post.findByPk(id)), 'new', 'past the window: the database answers');
        t.is(db.selects - before, 1);
        hold.release();
        t.is(titleOf(await refresher), 'new');
        t.is(cacheops.stats().staleHits, 0);

        await sleep(2100); // the key has expired
        await silently(cacheops, Post, id, 'newest');
        const missed = db.selects;
        t.is(titleOf(await Post.findByPk(id)), 'newest', 'a plain miss');
        t.is(db.selects - missed, 1);
      } finally {
        db.releaseAll();
        await blog.close();
      }
    });

    test.serial(`${label}: after any invalidation a stale value is never served, even with a raced refresh in flight (property)`, async (t) => {
      const blog = await open(dialect, mode, { timeout: 0.2, staleWhileRevalidate: 60 }, 'swrinval');
      const db = watchSelects(blog.sequelize);
      const kinds = ['save', 'bulkUpdate', 'destroy', 'createMatching', 'invalidateObj', 'invalidateModel', 'invalidateAll'] as const;
      let run = 0;
      let staleServed = 0;
      try {
        const { Post, cacheops } = blog;
        await fc.assert(fc.asyncProperty(
          fc.constantFrom(...kinds), fc.constantFrom('pk', 'where'), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 6 }),
          async (kind, shape, inFlight, lock, readers) => {
            run += 1;
            const group = 1000 + run;
            const p = await Post.create({ title: `old${run}`, views: group });
            const id = p.get('id') as number;
            const read = (cacheops_: unknown = { lock }): Promise<string> => (shape === 'pk'
              ? Post.findByPk(id, { cacheops: cacheops_ } as never).then((r) => String(titleOf(r)))
              : Post.findAll({ where: { views: group }, order: [['id', 'ASC']], cacheops: cacheops_ } as never).then(titlesOf));
            const truth = (): Promise<string> => read(false);
            t.is(await read(), await truth());
            await sleep(250); // stale now
            let refresher: Promise<string> | undefined;
            let release = (): void => undefined;
            if (inFlight) {
              // A refresh that read the old state and stores after the invalidation below.
              const hold = db.hold();
              refresher = read();
              await hold.entered;
              release = hold.release;
              const before = cacheops.stats().staleHits;
              t.is(await read(), `old${run}`, 'served stale while the refresh runs');
              t.is(cacheops.stats().staleHits - before, 1);
              staleServed += 1;
            }
            const next = `new${run}`;
            switch (kind) {
              case 'save': await p.update({ title: next }); break;
              case 'bulkUpdate': await Post.update({ title: next }, { where: { id } }); break;
              case 'destroy': await p.destroy(); break;
              case 'createMatching': await Post.create({ title: next, views: group }); break;
              case 'invalidateObj': await silently(cacheops, Post, id, next); await cacheops.invalidateObj(await Post.findByPk(id, { cacheops: false } as never) as Model); break;
              case 'invalidateModel': await silently(cacheops, Post, id, next); await cacheops.invalidateModel(Post); break;
              case 'invalidateAll': await silently(cacheops, Post, id, next); await cacheops.invalidateAll(); break;
            }
            const expected = await truth();
            // A pk read is not invalidated by a row it does not select (createMatching): its stale value is still true.
            const invalidated = !(kind === 'createMatching' && shape === 'pk');
            const staleBefore = cacheops.stats().staleHits;
            const seen = await Promise.all(Array.from({ length: readers }, () => read()));
            t.deepEqual(seen, seen.map(() => expected), `${kind} ${shape}: every read after the write equals the database`);
            if (invalidated) t.is(cacheops.stats().staleHits, staleBefore, `${kind} ${shape}: no stale hit after the invalidation`);
            release();
            await refresher;
            // The raced refresh's store was refused: what is cached is still the truth.
            t.is(await read(), await truth(), `${kind} ${shape}: after the raced refresh`);
            t.is(await read(), expected);
          },
        ), { numRuns: 14, endOnFailure: true });
        t.log(`${run} runs, ${staleServed} stale hits served before an invalidation`);
      } finally {
        db.releaseAll();
        await blog.close();
      }
    });
  }

  test.serial(`${dialect}: without the option values carry no header and live their timeout; with it the key lives timeout + window and its conj sets outlive it`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {
      profiles: { Post: { ops: 'all', timeout: 60 }, Author: { ops: 'all', timeout: 60, staleWhileRevalidate: 600 } },
    }, 'swrttl');
    try {
      const { Post, Author, cacheops } = blog;
      await Post.create({ title: 'x', views: 5 });
      await Author.create({ name: 'a' });
      const client = cacheops.core.redis;
      const prefix = cacheops.core.prefixFor([]);
      const valueKeys = async (): Promise<string[]> => client.keys(`${prefix}cacheops:{0}:q:*`);
      await Post.findAll({ where: { views: 5 } });
      const [plain] = await valueKeys();
      t.truthy(plain);
      const plainBytes = (await client.getBuffer(plain!))!;
      t.is(plainBytes[0], 1, 'the plain encoding, no header');
      const plainTtl = await client.ttl(plain!);
      t.true(plainTtl > 55 && plainTtl <= 60, `TTL ${plainTtl}`);
      await Author.findAll({ where: { name: 'a' } });
      const swr = (await valueKeys()).find((k) => k !== plain)!;
      t.is((await client.getBuffer(swr))![0], 0xf5, 'the freshness header');
      const ttl = await client.ttl(swr);
      t.true(ttl > 655 && ttl <= 660, `TTL ${ttl}`);
      const conj = await client.keys(`${prefix}cacheops:{0}:*:Authors:*`);
      t.true(conj.length >= 2, conj.join(' '));
      for (const key of conj) t.true(await client.ttl(key) >= ttl, `${key} outlives the value`);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: inside a transaction a stale value is not served`, async (t) => {
    const blog = await open(dialect, 'plain', { timeout: 0.2, staleWhileRevalidate: 60 }, 'swrtx');
    try {
      const { Post, sequelize, cacheops } = blog;
      const id = (await Post.create({ title: 'old' })).get('id') as number;
      await Post.findByPk(id);
      await silently(cacheops, Post, id, 'new');
      await sleep(250);
      const inside = await sequelize.transaction((transaction) => Post.findByPk(id, { transaction }));
      t.is(titleOf(inside), 'new');
      t.is(cacheops.stats().staleHits, 0);
    } finally {
      await blog.close();
    }
  });
}

for (const insideout of [false, true]) {
  test.serial(`refresh script${insideout ? ' (insideout)' : ''}: stale while the value is the one read (one lease), changed once refreshed, gone once invalidated`, async (t) => {
    const blog = await makeBlog('sqlite', __filename, {
      insideout, profiles: { '*': { ops: 'all', timeout: 0.2, staleWhileRevalidate: 60 } },
    }, 'swrscript');
    try {
      const { Post, cacheops } = blog;
      const { store, redis } = cacheops.core;
      const prefix = cacheops.core.prefixFor([]);
      const p = await Post.create({ title: 'old' });
      await Post.findByPk(p.get('id') as number);
      const [key] = await redis.keys(`${prefix}cacheops:{0}:q:*`);
      const hash = key!.slice(key!.lastIndexOf(':q:') + 3);
      const headerOf = async (): Promise<Buffer> =>
        readFreshness((insideout ? await redis.hgetBuffer(key!, 'v') : await redis.getBuffer(key!))!).header!;
      const read = await headerOf();
      const first = await store.refresh(prefix, hash, ['Posts'], read, 5000);
      t.is(first.kind, 'stale');
      t.false(first.kind === 'stale' && first.lockHeld, 'the first caller takes the lease');
      const second = await store.refresh(prefix, hash, ['Posts'], read, 5000);
      t.true(second.kind === 'stale' && second.lockHeld, 'the next one finds it held');
      if (first.kind !== 'stale') return;
      await store.releaseLease(prefix, hash, first.snapshot.lockToken);
      await sleep(250);
      await Post.findByPk(p.get('id') as number); // stale: this read refreshes it
      const changed = await store.refresh(prefix, hash, ['Posts'], read, 5000);
      t.is(changed.kind, 'changed', 'a refresh stored meanwhile: the current value comes back');
      const current = await headerOf();
      t.notDeepEqual(current, read);
      await p.update({ title: 'new' });
      const gone = await store.refresh(prefix, hash, ['Posts'], current, 5000);
      t.is(gone.kind, 'gone', 'an invalidated value is never taken for stale');
    } finally {
      await blog.close();
    }
  });
}
