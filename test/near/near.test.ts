/**
 * The near cache (`near` profile option) with cacheops's own Redis client
 * (helpers/near-checks.ts; test/package/clients.test.ts runs the same checks with each
 * client an application may hand in); entries and bytes are bounded.
 */
import test from 'ava';
import { makeBlog } from '../helpers/models';
import { nearReady } from '../helpers/near';
import { registerNearChecks, warm } from '../helpers/near-checks';

registerNearChecks(__filename, '');

test.serial('sqlite: the near cache is bounded by entries and by bytes (least recently used go first)', async (t) => {
  const blog = await makeBlog('sqlite', __filename, { profiles: { Post: { ops: 'all', near: { maxEntries: 3 } }, Tag: { ops: 'all', near: { maxBytes: 2000 } } } }, 'nearlru');
  try {
    const { Post, Tag, cacheops } = blog;
    await nearReady(cacheops);
    const ids: number[] = [];
    for (let i = 0; i < 6; i += 1) ids.push((await Post.create({ title: `p${i}` })).get('id') as number);
    for (const id of ids) await warm(cacheops, () => Post.findByPk(id));
    const postCache = cacheops.core.near!.cacheOf(cacheops.core.profileOf(Post)!, { maxEntries: 3, maxBytes: 1 << 20 });
    t.is(postCache.size, 3);
    const before = cacheops.stats().nearHits;
    await Post.findByPk(ids[5]!); // most recent: near
    t.is(cacheops.stats().nearHits, before + 1);
    await Post.findByPk(ids[0]!); // evicted: Redis (then admitted again)
    t.is(cacheops.stats().nearHits, before + 1);
    t.is(postCache.size, 3);
    for (let i = 0; i < 20; i += 1) await Tag.create({ name: `tag ${i} ${'x'.repeat(200)}` });
    for (let i = 1; i <= 20; i += 1) {
      for (let k = 0; k < 3; k += 1) await Tag.findByPk(i);
    }
    const tagCache = cacheops.core.near!.cacheOf(cacheops.core.profileOf(Tag)!, { maxEntries: 1, maxBytes: 1 });
    t.true(tagCache.size > 0 && tagCache.size < 20, `${tagCache.size} tags kept`);
    t.true(tagCache.bytes <= 2000, `${tagCache.bytes} bytes`);
  } finally {
    await blog.close();
  }
});
