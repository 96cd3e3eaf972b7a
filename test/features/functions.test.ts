import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CacheMiss, CacheopsConfigError, CacheopsSerializationError } from '../../src/index';
import { makeBlog, type Blog } from '../helpers/models';
import { dialects, rawRedis } from '../helpers/env';
import { declare } from '../fixtures/fn-identity';

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A counted function: `calls` says how often the real body ran. */
function counted<A extends unknown[], R>(body: (...args: A) => R): ((...args: A) => Promise<R>) & { calls: number } {
  const fn = Object.assign(async (...args: A) => { fn.calls += 1; return body(...args); }, { calls: 0 });
  return fn;
}

async function withBlog(dialect: Parameters<typeof makeBlog>[0], label: string, body: (blog: Blog) => Promise<void>): Promise<void> {
  const blog = await makeBlog(dialect, __filename, {}, label);
  try {
    await body(blog);
  } finally {
    await blog.close();
  }
}

for (const dialect of dialects()) {
  test.serial(`${dialect}: cachedAs samples are invalidated by matching writes only`, async (t) => {
    await withBlog(dialect, 'fnsamples', async ({ cacheops, Post, Tag, Category }) => {
      Post.addScope('published', { where: { published: true } });
      const [c2, c3] = await Promise.all([Category.create({ name: 'two' }), Category.create({ name: 'three' })]);
      const p1 = await Post.create({ title: 'p1', published: true, categoryId: c2.get('id') });
      const p2 = await Post.create({ title: 'p2', published: false, categoryId: c3.get('id') });

      const byModel = counted(() => 'tags');
      const byScope = counted(() => 'published');
      const byInstance = counted(() => 'p1');
      const byWhere = counted(() => 'category two');
      const fns = {
        byModel: cacheops.cachedAs(Tag)(byModel),
        byScope: cacheops.cachedAs(Post.scope('published'))(byScope),
        byInstance: cacheops.cachedAs(p1)(byInstance),
        byWhere: cacheops.cachedAs({ model: Post, where: { categoryId: c2.get('id') } })(byWhere),
      };
      const counts = async (): Promise<number[]> => {
        for (const f of Object.values(fns)) await f();
        return [byModel.calls, byScope.calls, byInstance.calls, byWhere.calls];
      };
      t.deepEqual(await counts(), [1, 1, 1, 1]);
      t.deepEqual(await counts(), [1, 1, 1, 1], 'hits');

      await Post.create({ title: 'draft', published: false, categoryId: c3.get('id') });
      t.deepEqual(await counts(), [1, 1, 1, 1], 'an unpublished post in category three touches none');
      await p2.update({ title: 'p2 renamed' });
      t.deepEqual(await counts(), [1, 1, 1, 1], 'another row: none');
      await Tag.create({ name: 'x' });
      t.deepEqual(await counts(), [2, 1, 1, 1], 'a tag write: the model sample only');
      await Post.create({ title: 'live', published: true, categoryId: c3.get('id') });
      t.deepEqual(await counts(), [2, 2, 1, 1], 'a published post: the scope');
      await Post.create({ title: 'in two', published: false, categoryId: c2.get('id') });
      t.deepEqual(await counts(), [2, 2, 1, 2], 'a post in category two: the where sample');
      await p1.update({ views: 10 });
      t.deepEqual(await counts(), [2, 3, 2, 3], 'p1 itself: instance, scope (published) and where (category two)');
    });
  });

  test.serial(`${dialect}: several samples, timeout, extra, invalidate and key()`, async (t) => {
    await withBlog(dialect, 'fnopts', async ({ cacheops, Post, Tag, Category, Author }) => {
      const c = await Category.create({ name: 'c' });
      const body = counted((n: number) => ({ n, at: 'computed' }));
      Tag.addScope('visible', { where: { name: 'visible' } });
      // (Not Post: writes to a category conservatively invalidate its posts, through the foreign key.)
      const stats = cacheops.cachedAs(Author, Tag.scope('visible'), { model: Category, where: { id: c.get('id') } }, { timeout: 120, extra: 'v2' })(body);
      t.deepEqual(await stats(5), { n: 5, at: 'computed' });
      await stats(5);
      await stats(6);
      t.is(body.calls, 2, 'cached by arguments');

      const redis = rawRedis();
      try {
        const prefix = cacheops.core.config.prefix as string;
        const keys: string[] = [];
        for await (const page of redis.scanStream({ match: `${prefix}cacheops:{*}:q:*`, count: 1000 })) keys.push(...(page as string[]));
        t.is(keys.length, 2);
        for (const k of keys) {
          const ttl = await redis.ttl(k);
          t.true(ttl > 100 && ttl <= 120, `timeout 120 gives ttl ${ttl}`);
        }
      } finally {
        redis.disconnect();
      }

      t.true(await stats.invalidate(5));
      t.false(await stats.invalidate(5));
      await stats(5);
      await stats(6);
      t.is(body.calls, 3, 'invalidate drops only its arguments');

      await Category.create({ name: 'other' });
      await Tag.create({ name: 'hidden' });
      await stats(5);
      t.is(body.calls, 3, 'another category, a tag outside the scope: no match');
      await Tag.create({ name: 'visible' });
      await stats(5);
      t.is(body.calls, 4, 'a tag in the scope matches');
      await c.update({ name: 'renamed' });
      await stats(5);
      t.is(body.calls, 5, 'the sampled category matches');

      const entry = stats.key(9);
      await t.throwsAsync(entry.get(), { instanceOf: CacheMiss });
      await entry.set({ n: -9, at: 'set by hand' });
      t.deepEqual(await entry.get(), { n: -9, at: 'set by hand' });
      t.deepEqual(await stats(9), { n: -9, at: 'set by hand' });
      await Author.create({ name: 'any author' });
      await t.throwsAsync(entry.get(), { instanceOf: CacheMiss, message: /cache miss/ }, 'a set entry is invalidated like a computed one');
      await entry.set({ n: 1, at: 'again' });
      t.true(await entry.delete());
      t.false(await entry.delete());
      await t.throwsAsync(entry.get(), { instanceOf: CacheMiss });

      // extra: a value makes a separate entry; a function of the arguments is evaluated per call.
      const make = (extra: unknown) => cacheops.cachedAs(Post, { extra })(body);
      const before = body.calls;
      await make('a')(1);
      await make('a')(1);
      await make('b')(1);
      t.is(body.calls, before + 2);
      let lang = 'en';
      const seen: unknown[][] = [];
      const byLang = counted((s: string) => `${lang}:${s}`);
      const localized = cacheops.cachedAs(Post, { extra: (...args: unknown[]) => { seen.push(args); return lang; } })(byLang);
      t.is(await localized('hi'), 'en:hi');
      t.is(await localized('hi'), 'en:hi');
      lang = 'fr';
      t.is(await localized('hi'), 'fr:hi');
      t.is(byLang.calls, 2);
      t.deepEqual(seen[0], ['hi']);

      t.throws(() => cacheops.cachedAs(Post, { timeout: 0 }), { instanceOf: CacheopsConfigError, message: /timeout/ });
      t.throws(() => cacheops.cachedAs({ timeout: 5 }), { instanceOf: CacheopsConfigError, message: /sample/ });
      t.throws(() => cacheops.cachedAs('Post' as never), { instanceOf: CacheopsConfigError });
      t.throws(() => cacheops.cached({ tiemout: 5 } as never), { instanceOf: CacheopsConfigError, message: /tiemout/ });
    });
  });
}

test.serial('the conj set of a sample outlives every value it guards (to the millisecond)', async (t) => {
  await withBlog('sqlite', 'fnttl', async ({ cacheops, Post }) => {
    const post = await Post.create({ title: 'ttl' });
    const fn = cacheops.cachedAs(post, { timeout: 10 })((n: number) => n);
    await fn(1);
    const redis = rawRedis();
    try {
      const prefix = cacheops.core.config.prefix as string;
      const scan = async (kind: string): Promise<string[]> => {
        const out: string[] = [];
        for await (const page of redis.scanStream({ match: `${prefix}cacheops:{*}:${kind}*`, count: 1000 })) out.push(...(page as string[]));
        return out;
      };
      const conjs = await scan('conj:');
      t.is(conjs.length, 1);
      // 9.6 s left reads as TTL 10: a check in whole seconds would not extend it for a new 10 s value.
      await redis.pexpire(conjs[0]!, 9600);
      const before = new Set(await scan('q:'));
      await fn(2);
      const [fresh] = (await scan('q:')).filter((k) => !before.has(k));
      const [conjTtl, valueTtl] = [await redis.pttl(conjs[0]!), await redis.pttl(fresh!)];
      t.true(conjTtl >= valueTtl, `conj ${conjTtl} ms >= value ${valueTtl} ms`);
    } finally {
      redis.disconnect();
    }
  });
});

test.serial('cached by time: recomputed after the timeout, never invalidated by writes', async (t) => {
  await withBlog('sqlite', 'fntime', async ({ cacheops, Post }) => {
    const body = counted((category: string) => `top of ${category}`);
    const top = cacheops.cached({ timeout: 2 })(body);
    t.is(await top('news'), 'top of news');
    await Post.create({ title: 'a write' });
    await cacheops.invalidateModel(Post);
    t.is(await top('news'), 'top of news');
    t.is(body.calls, 1, 'writes do not touch a function cached by time');
    await sleep(2600);
    await top('news');
    t.is(body.calls, 2, 'expired after 2 s');
  });
});

test.serial('lock: concurrent calls compute once', async (t) => {
  await withBlog('sqlite', 'fnlock', async ({ cacheops, Post }) => {
    const slow = counted(async (n: number) => { await sleep(300); return n * 2; });
    const locked = cacheops.cachedAs(Post, { lock: true })(slow);
    const results = await Promise.all([1, 2, 3, 4, 5].map(() => locked(21)));
    t.deepEqual(results, [42, 42, 42, 42, 42]);
    t.is(slow.calls, 1);

    const slow2 = counted(async (n: number) => { await sleep(300); return n * 2; });
    const unlocked = cacheops.cachedAs(Post, { lock: false })(slow2);
    await Promise.all([1, 2, 3, 4, 5].map(() => unlocked(21)));
    t.is(slow2.calls, 5, 'without the lock every concurrent miss computes');
  });
});

test.serial('function identity: the same declaration site in two processes shares keys; two functions never do', async (t) => {
  await withBlog('sqlite', 'fnident', async ({ cacheops }) => {
    const { a, b } = declare(cacheops);
    await a.key(7).set('stored by the test process');
    const child = await run(process.execPath, ['--import', 'tsx', join(__dirname, '..', 'fixtures', 'fn-identity.ts')], {
      env: { ...process.env, FN_TEST_PREFIX: cacheops.core.config.prefix as string },
    });
    const out = JSON.parse(child.stdout) as { pid: number; a: string; b: string };
    t.not(out.pid, process.pid);
    t.is(out.a, 'stored by the test process', 'the child found the entry the test process stored');
    t.is(out.b, `b computed in ${out.pid} for 7`, 'b, same arguments, has its own entry');
    t.is(await b(7), `b computed in ${out.pid} for 7`, 'and the test process finds what the child stored');

    const one = counted((n: number) => `one ${n}`);
    const two = counted((n: number) => `one ${n}`);
    const f1 = cacheops.cached()(one);
    const f2 = cacheops.cached()(two);
    t.is(await f1(1), 'one 1');
    t.is(await f2(1), 'one 1');
    t.is(two.calls, 1, 'same body, different declaration: separate entries');
    await f1.key(1).set('changed');
    t.is(await f2(1), 'one 1');
  });
});

test.serial('serializer: Date, Buffer, BigInt, Map/Set and model instances round-trip; unserializable values store nothing', async (t) => {
  await withBlog('sqlite', 'fnser', async ({ cacheops, Post, Category }) => {
    const cat = await Category.create({ name: 'cat' });
    const post = await Post.create({ title: 'typed', categoryId: cat.get('id'), publishedAt: new Date('2024-01-02T03:04:05.678Z') });
    const loaded = await Post.findByPk(post.get('id') as number, { include: [Category], cacheops: false } as never);
    const value = {
      when: new Date('2020-02-29T12:00:00.000Z'), bytes: Buffer.from('héllo'), big: 9007199254740993n,
      map: new Map<string, unknown>([['k', [1, 2]]]), set: new Set(['a', 'b']), post: loaded, posts: [post],
    };
    const body = counted(() => value);
    const fn = cacheops.cached({ timeout: 60 })(body);
    await fn();
    const hit = await fn();
    t.is(body.calls, 1);
    t.true(hit.when instanceof Date);
    t.is(hit.when.getTime(), value.when.getTime());
    t.true(Buffer.isBuffer(hit.bytes));
    t.is(hit.bytes.toString(), 'héllo');
    t.is(hit.big, 9007199254740993n);
    t.deepEqual([...hit.map], [['k', [1, 2]]]);
    t.deepEqual([...hit.set], ['a', 'b']);
    t.true(hit.post instanceof Post);
    t.false(hit.post!.isNewRecord);
    t.deepEqual(hit.post!.get({ plain: true }), loaded!.get({ plain: true }));
    t.true((hit.post!.get('Category') as object) instanceof Category, 'included instances are rebuilt');
    t.true(hit.posts[0] instanceof Post);

    class Money { constructor(readonly cents: number) {} }
    for (const [label, bad] of [['function', { f: () => 1 }], ['class instance', { m: new Money(5) }]] as const) {
      const badBody = counted(() => bad);
      const badFn = cacheops.cached({ key: `bad-${label}` })(badBody);
      await t.throwsAsync(badFn(), { instanceOf: CacheopsSerializationError }, label);
      await t.throwsAsync(badFn.key().get(), { instanceOf: CacheMiss }, `${label}: nothing stored`);
      await t.throwsAsync(badFn(), { instanceOf: CacheopsSerializationError });
      t.is(badBody.calls, 2, `${label}: computed again, as nothing was stored`);
      await t.throwsAsync(badFn.key().set(bad as never), { instanceOf: CacheopsSerializationError });
      await t.throwsAsync(badFn.key().get(), { instanceOf: CacheMiss });
    }
  });
});
