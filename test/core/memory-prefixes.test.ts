/**
 * The prefixes a prefix function returns are remembered within
 * `memory.prefixes`; what is forgotten is still reached through the registry
 * in Redis: invalidateFragment and invalidateAll drop values under prefixes
 * this process no longer remembers.
 */
import test from 'ava';
import nunjucks from 'nunjucks';
import { invalidateFragment } from '../../src/index';
import { makeBlog } from '../helpers/models';
import { countSql, uniquePrefix } from '../helpers/env';

test.serial('more tenants than memory.prefixes: fragments and queries of forgotten prefixes are still invalidated', async (t) => {
  const base = uniquePrefix('prefixes');
  let tenant = 0;
  const blog = await makeBlog('sqlite', __filename, { prefix: () => `${base}t${tenant}:`, memory: { prefixes: { maxEntries: 5 } } }, 'prefixes');
  const { Post, sequelize, cacheops } = blog;
  const env = new nunjucks.Environment(undefined, { autoescape: false });
  cacheops.addNunjucksExtension(env);
  let renders = 0;
  const render = (): Promise<string> => new Promise((resolve, reject) => {
    env.renderString("{% cached name='menu' %}{{ count() }}{% endcached %}", { count: () => (renders += 1) }, (e, r) => (e ? reject(e) : resolve(r ?? '')));
  });
  const tenants = 20;
  try {
    await Post.create({ title: 'a' });
    for (tenant = 0; tenant < tenants; tenant += 1) {
      await Post.findAll();
      await render();
    }
    const remembered = (cacheops.core as unknown as { registeredPrefixes: { size: number } }).registeredPrefixes.size;
    t.true(remembered <= 5, `${remembered} prefixes remembered`);
    t.is(renders, tenants);
    for (tenant = 0; tenant < tenants; tenant += 1) await render();
    t.is(renders, tenants, 'each tenant\'s fragment is cached');

    await invalidateFragment('menu');
    for (tenant = 0; tenant < tenants; tenant += 1) await render();
    t.is(renders, 2 * tenants, 'invalidateFragment reached every tenant, remembered or not');

    for (tenant = 0; tenant < tenants; tenant += 1) t.is((await countSql(sequelize, () => Post.findAll())).sql.length, 0, `tenant ${tenant} cached`);
    await cacheops.invalidateAll();
    let misses = 0;
    for (tenant = 0; tenant < tenants; tenant += 1) misses += (await countSql(sequelize, () => Post.findAll())).sql.length;
    t.is(misses, tenants, 'invalidateAll reached every tenant');
  } finally {
    await blog.close();
  }
});
