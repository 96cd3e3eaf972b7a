import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nunjucks from 'nunjucks';
import type { Model, ModelStatic } from 'sequelize';
import { CacheopsError, CacheopsExtension, invalidateFragment, renderAsync } from '../../src/index';
import { makeBlog, type Blog } from '../helpers/models';
import { countSql, dialects, type Dialect } from '../helpers/env';

interface Fixture {
  readonly blog: Blog;
  readonly env: nunjucks.Environment;
  /** Writes templates (name -> source) into the loader's directory. */
  write(files: Record<string, string>): void;
  render(name: string, ctx?: object): Promise<string>;
  /** A context function counting how often fragment bodies really ran. */
  readonly counter: { n: number; next: () => number };
}

function onFixture(title: string, body: (t: ExecutionContext, f: Fixture) => Promise<void>, dialect: Dialect = 'sqlite'): void {
  test.serial(`${dialect}: ${title}`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'njk');
    const dir = mkdtempSync(join(tmpdir(), 'cacheops-njk-'));
    const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir), { autoescape: true });
    blog.cacheops.addNunjucksExtension(env);
    // A real query per call (uncached), to see with countSql whether a fragment body ran.
    env.addFilter('titles', (model: ModelStatic<Model>, cb: (err: unknown, out?: string) => void) => {
      model.findAll({ order: [['id', 'ASC']], cacheops: false } as object)
        .then((rows) => cb(null, rows.map((r) => String(r.get('title'))).join(',')), cb);
    }, true);
    const counter = { n: 0, next: () => (counter.n += 1) };
    const fixture: Fixture = {
      blog, env, counter,
      write(files) { for (const [name, src] of Object.entries(files)) writeFileSync(join(dir, name), src); },
      render: (name, ctx = {}) => renderAsync(env, name, { count: counter.next, ...blog, ...ctx }),
    };
    try {
      await body(t, fixture);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await blog.close();
    }
  });
}

for (const dialect of dialects()) {
  onFixture('a cached_as fragment runs no SQL on a hit and is invalidated by a write to its sample', async (t, f) => {
    const { Post, sequelize } = f.blog;
    await Post.create({ title: 'a', views: 1 });
    f.write({ 'list.njk': 'list:\n{% cached_as { model: Post, where: { views: 1 } } %}[{{ Post | titles }}]{% endcached_as %}\n' });
    const first = await countSql(sequelize, () => f.render('list.njk'));
    t.is(first.result, 'list:\n[a]\n');
    t.is(first.sql.length, 1);
    const second = await countSql(sequelize, () => f.render('list.njk'));
    t.is(second.result, first.result);
    t.is(second.sql.length, 0, 'the hit ran no SQL');
    await Post.create({ title: 'b', views: 2 });
    t.is((await countSql(sequelize, () => f.render('list.njk'))).sql.length, 0, 'a write outside the sample keeps it');
    await Post.create({ title: 'c', views: 1 });
    const third = await countSql(sequelize, () => f.render('list.njk'));
    t.is(third.result, 'list:\n[a,b,c]\n');
    t.is(third.sql.length, 1);
  }, dialect);
}

onFixture('an instance sample in a loop: each row has its own fragment, invalidated by its own save', async (t, f) => {
  const { Post } = f.blog;
  await Post.bulkCreate([{ title: 'p1' }, { title: 'p2' }, { title: 'p3' }]);
  f.write({ 'loop.njk': '{% for p in posts %}{% cached_as p, extra=p.id %}{{ p.title }}#{{ count() }} {% endcached_as %}{% endfor %}' });
  const posts = async (): Promise<Model[]> => Post.findAll({ order: [['id', 'ASC']], cacheops: false } as object);
  t.is(await f.render('loop.njk', { posts: await posts() }), 'p1#1 p2#2 p3#3 ');
  t.is(await f.render('loop.njk', { posts: await posts() }), 'p1#1 p2#2 p3#3 ');
  const p2 = (await posts())[1]!;
  await p2.update({ title: 'P2' });
  t.is(await f.render('loop.njk', { posts: await posts() }), 'p1#1 P2#4 p3#3 ');
  t.is(f.counter.n, 4);
});

onFixture('includes and template inheritance: fragments in blocks and included templates', async (t, f) => {
  f.write({
    'base.njk': '<main>{% block content %}base{% endblock %}</main>{% include "footer.njk" %}',
    'footer.njk': '<footer>{% cached timeout=60 %}footer#{{ count() }}{% endcached %}</footer>',
    'page.njk': '{% extends "base.njk" %}{% block content %}{% cached_as Post %}page#{{ count() }}{% endcached_as %}{% endblock %}',
  });
  const html = '<main>page#1</main><footer>footer#2</footer>';
  t.is(await f.render('page.njk'), html);
  t.is(await f.render('page.njk'), html);
  await f.blog.Post.create({ title: 'new' });
  t.is(await f.render('page.njk'), '<main>page#3</main><footer>footer#2</footer>');
  // The callback form of env.render works the same.
  const viaCallback = await new Promise<string>((resolve, reject) => {
    f.env.render('page.njk', { count: f.counter.next, Post: f.blog.Post }, (err, res) => (err ? reject(err) : resolve(res ?? '')));
  });
  t.is(viaCallback, '<main>page#3</main><footer>footer#2</footer>');
});

onFixture('two tags never share a key: same line, other lines, other templates, string templates', async (t, f) => {
  f.write({
    'a.njk': '{% cached %}A{% endcached %}{% cached %}B{% endcached %}\n{% cached %}C{% endcached %}',
    'b.njk': '{% cached %}D{% endcached %}{% cached %}E{% endcached %}\n{% cached %}F{% endcached %}',
  });
  for (let i = 0; i < 2; i += 1) {
    t.is(await f.render('a.njk'), 'AB\nC');
    t.is(await f.render('b.njk'), 'DE\nF');
  }
  const one = await new Promise<string>((resolve, reject) => f.env.renderString('{% cached %}one{% endcached %}', {}, (e, r) => (e ? reject(e) : resolve(r ?? ''))));
  const two = await new Promise<string>((resolve, reject) => f.env.renderString('{% cached %}two{% endcached %}', {}, (e, r) => (e ? reject(e) : resolve(r ?? ''))));
  t.deepEqual([one, two], ['one', 'two']);
});

onFixture('extra= and its alias cache_key= are part of the key; invalidateFragment by template and line', async (t, f) => {
  f.write({
    'menu.njk': 'x\n{% cached timeout=600, extra=lang %}{{ lang }}#{{ count() }}{% endcached %}|{% cached cache_key="k" %}k#{{ count() }}{% endcached %}',
  });
  t.is(await f.render('menu.njk', { lang: 'en' }), 'x\nen#1|k#2');
  t.is(await f.render('menu.njk', { lang: 'fr' }), 'x\nfr#3|k#2');
  t.is(await f.render('menu.njk', { lang: 'en' }), 'x\nen#1|k#2');
  await invalidateFragment('menu.njk', 2, 'fr');
  t.is(await f.render('menu.njk', { lang: 'fr' }), 'x\nfr#4|k#2', 'fr dropped');
  t.is(await f.render('menu.njk', { lang: 'en' }), 'x\nen#1|k#2', 'en kept');
  // The second tag on line 2 is addressed as 'line:col'.
  const col = 'x\n{% cached timeout=600, extra=lang %}{{ lang }}#{{ count() }}{% endcached %}|{% '.split('\n')[1]!.length + 1;
  await invalidateFragment('menu.njk', `2:${col}`, 'k');
  t.is(await f.render('menu.njk', { lang: 'en' }), 'x\nen#1|k#5');
});

onFixture('name= fragments are dropped by invalidateFragment(name, ...extras)', async (t, f) => {
  f.write({
    'one.njk': '{% cached name="menu", extra=lang %}one {{ lang }}#{{ count() }}{% endcached %}',
    'two.njk': '{% cached name="sidebar" %}side#{{ count() }}{% endcached %}',
  });
  t.is(await f.render('one.njk', { lang: 'en' }), 'one en#1');
  t.is(await f.render('two.njk'), 'side#2');
  t.is(await f.render('one.njk', { lang: 'en' }), 'one en#1');
  await invalidateFragment('menu', 'en');
  t.is(await f.render('one.njk', { lang: 'en' }), 'one en#3');
  t.is(await f.render('two.njk'), 'side#2');
  const ext = new CacheopsExtension(f.blog.cacheops);
  t.true(await ext.invalidateFragment('sidebar'));
  t.is(await f.render('two.njk'), 'side#4');
});

onFixture('the seed spellings cacheoped_as and cacheopedas work like cached_as', async (t, f) => {
  f.write({
    'seed.njk': '{% cacheoped_as Post %}a#{{ count() }}{% endcacheoped_as %} {% cacheopedas Tag, timeout=60 %}b#{{ count() }}{% endcacheopedas %}',
  });
  t.is(await f.render('seed.njk'), 'a#1 b#2');
  t.is(await f.render('seed.njk'), 'a#1 b#2');
  await f.blog.Tag.create({ name: 't' });
  t.is(await f.render('seed.njk'), 'a#1 b#3');
  await f.blog.Post.create({ title: 'p' });
  t.is(await f.render('seed.njk'), 'a#4 b#3');
});

onFixture('fragments are escaped once: autoescape applies inside, not again on a hit', async (t, f) => {
  await f.blog.Post.create({ title: '<x>' });
  f.write({
    'esc.njk': '{% cached %}<b>{{ text }}</b>{% endcached %}',
    // An async filter in the body makes nunjucks rebuild the tag's node (and forget its autoescape flag).
    'esc-async.njk': '{% extends "esc-base.njk" %}{% block main %}{% cached_as Post %}<i>{{ Post | titles }}</i>{% endcached_as %}{% endblock %}',
    'esc-base.njk': '<main>{% block main %}{% endblock %}</main>',
  });
  t.is(await f.render('esc.njk', { text: '<i>' }), '<b>&lt;i&gt;</b>');
  t.is(await f.render('esc.njk', { text: '<i>' }), '<b>&lt;i&gt;</b>');
  t.is(await f.render('esc-async.njk'), '<main><i>&lt;x&gt;</i></main>');
  t.is(await f.render('esc-async.njk'), '<main><i>&lt;x&gt;</i></main>');
});

onFixture('a sync render fails with a CacheopsError telling to render asynchronously', async (t, f) => {
  f.write({ 'sync.njk': 'a\n{% cached %}x{% endcached %}', 'plain.njk': 'no tags {{ 1 + 1 }}' });
  const error = t.throws(() => f.env.render('sync.njk', {}), { instanceOf: CacheopsError });
  t.regex(error!.message, /sync\.njk \(line 2\).*render this template with a callback.*renderAsync/s);
  t.is(f.env.render('plain.njk', {}), 'no tags 2', 'templates without the tags still render synchronously');
  t.is(await f.render('sync.njk'), 'a\nx', 'and the tagged one asynchronously');
});

onFixture('bad tags and bad samples give clear errors', async (t, f) => {
  f.write({
    'kw.njk': '{% cached nope=1 %}x{% endcached %}',
    'pos.njk': '{% cached Post %}x{% endcached %}',
    'nosample.njk': '{% cached_as %}x{% endcached_as %}',
    'undef.njk': '{% cached_as missing %}x{% endcached_as %}',
    'notsample.njk': '{% cached_as 42 %}x{% endcached_as %}',
    'both.njk': '{% cached extra=1, cache_key=2 %}x{% endcached %}',
  });
  await t.throwsAsync(f.render('kw.njk'), { message: /unknown keyword nope=/ });
  await t.throwsAsync(f.render('pos.njk'), { message: /takes only keywords/ });
  await t.throwsAsync(f.render('nosample.njk'), { message: /give a sample first/ });
  await t.throwsAsync(f.render('undef.njk'), { message: /undef\.njk \(line 1\): sample 1 is undefined/ });
  await t.throwsAsync(f.render('notsample.njk'), { message: /sample 1 is not a model/ });
  await t.throwsAsync(f.render('both.njk'), { message: /not both/ });
});
