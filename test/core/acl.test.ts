/**
 * Least privilege: cacheops runs under the Redis ACL user of
 * docs/redis-security.md (its keys, its channel, its commands and nothing
 * else), every feature included, on a private redis-server. A user lacking
 * one command gets one CacheopsPermissionError at start-up, and no refused
 * command is sent per request afterwards (Redis's ACL LOG stays empty).
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express, { type Request, type Response } from 'express';
import IORedis, { Cluster } from 'ioredis';
import nunjucks from 'nunjucks';
import { CacheopsPermissionError, renderAsync, type CacheopsConfig } from '../../src/index';
import { main, type CliIo } from '../../src/cli/main';
import { aclRules, commandsFor } from '../../src/core/permissions';
import { countSql } from '../helpers/env';
import { makeBlog, type Blog } from '../helpers/models';
import { nearReady, until } from '../helpers/near';
import { useAclRedis } from '../helpers/acl-redis';
import { startPrivateCluster } from '../helpers/private-cluster';

const ROOT = join(__dirname, '..', '..');
const PREFIX = 'myapp:';
const FEATURES = { prefix: PREFIX, near: true, cli: true } as const;

/** The rules of the documented `ACL SETUSER cacheops on '>password' <rules>` line. */
function documentedRules(): string {
  const doc = readFileSync(join(ROOT, 'docs', 'redis-security.md'), 'utf8');
  const m = /ACL SETUSER cacheops on '>[^']*' (.+)$/m.exec(doc);
  if (!m) throw new Error('no ACL SETUSER line in docs/redis-security.md');
  return m[1]!;
}

const server = useAclRedis();
const { createUser } = server;

/** The ACL LOG entries (every command or key Redis refused, scripts' calls included), with their counts. */
async function refusals(): Promise<{ what: string; count: number }[]> {
  const entries = (await server.admin.call('ACL', 'LOG')) as unknown[][];
  return entries.map((e) => {
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < e.length; i += 2) fields.set(String(e[i]), e[i + 1]);
    return { what: `${String(fields.get('context'))} ${String(fields.get('reason'))} ${String(fields.get('object'))}`, count: Number(fields.get('count')) };
  });
}

const refusedCalls = async (): Promise<number> => (await refusals()).reduce((n, r) => n + r.count, 0);

function blogOn(url: string, logs: string[], extra: Partial<CacheopsConfig> = {}): Promise<Blog> {
  return makeBlog('sqlite', __filename, {
    redis: url, prefix: PREFIX, degradeOnFailure: false,
    profiles: { Post: { ops: 'all', near: true }, '*': { ops: 'all' } },
    logger: (message) => logs.push(message),
    ...extra,
  }, 'acl');
}

async function noSql(blog: Blog, read: () => Promise<unknown>): Promise<boolean> {
  return (await countSql(blog.sequelize, read)).sql.length === 0;
}

async function cli(args: readonly string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const io: CliIo = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => out.push(s), isTTY: false }, env: {}, cwd: ROOT };
  return { code: await main(args, io), out: out.join('') };
}

test.serial('the documented ACL line is the one the configuration needs, and covers every command the Lua scripts call', (t) => {
  t.is(documentedRules(), aclRules(FEATURES));
  const needed = new Set(commandsFor({ prefix: PREFIX, streamWrites: true }));
  const called = new Set<string>();
  for (const file of readdirSync(join(ROOT, 'src', 'core', 'lua'), { recursive: true }) as string[]) {
    if (!file.endsWith('.lua')) continue;
    for (const m of readFileSync(join(ROOT, 'src', 'core', 'lua', file), 'utf8').matchAll(/redis\.p?call\(\s*'([A-Za-z]+)'/g)) called.add(m[1]!.toLowerCase());
  }
  t.true(called.size > 10, 'the scripts were read');
  t.deepEqual([...called].filter((c) => !needed.has(c)), [], 'every command a script calls is in the list');
});

test.serial('every feature runs under the documented least-privilege user, and Redis refuses nothing', async (t) => {
  const url = await createUser('cacheops', documentedRules());
  const logs: string[] = [];
  const blog = await blogOn(url, logs);
  const { cacheops, Post } = blog;
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-acl-'));
  try {
    await cacheops.ready();
    await nearReady(cacheops);
    // Queries and writes.
    const p = await Post.create({ title: 'one', views: 1 });
    const list = () => Post.findAll({ where: { views: 1 } });
    await list();
    t.true(await noSql(blog, list), 'a query hit');
    await Post.count();
    t.true(await noSql(blog, () => Post.count()), 'a count hit');
    await p.update({ title: 'two' });
    t.deepEqual((await list()).map((r) => r.get('title')), ['two'], 'the write invalidated');
    // The near cache.
    const byPk = () => Post.findByPk(p.get('id') as number);
    await until('a near hit', async () => {
      const before = cacheops.stats().nearHits;
      await byPk();
      return cacheops.stats().nearHits > before;
    });
    await p.update({ title: 'three' });
    t.is((await byPk())?.get('title'), 'three', 'the near cache dropped the invalidated value');
    // Functions.
    let runs = 0;
    const fn = cacheops.cachedAs(Post)(async () => { runs += 1; return Post.count({ cacheops: false } as object); });
    await fn();
    await fn();
    t.is(runs, 1, 'a function hit');
    await Post.create({ title: 'four' });
    t.is(await fn(), 2);
    t.is(runs, 2, 'the function was invalidated');
    // Views.
    let calls = 0;
    const app = express();
    app.get('/v', cacheops.cachedViewAs(Post, { timeout: 60 })((_req: Request, res: Response) => { calls += 1; res.send(`v${calls}`); }));
    const server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      t.is(await (await fetch(`${base}/v`)).text(), 'v1');
      t.is(await (await fetch(`${base}/v`)).text(), 'v1', 'a view hit');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    // Fragments.
    const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir));
    cacheops.addNunjucksExtension(env);
    writeFileSync(join(dir, 'f.njk'), '{% cached_as Post %}[{{ n() }}]{% endcached_as %}');
    let n = 0;
    const render = () => renderAsync(env, 'f.njk', { Post, n: () => (n += 1) });
    t.is(await render(), '[1]');
    t.is(await render(), '[1]', 'a fragment hit');
    // Simple caching, explicit invalidation, stats.
    await cacheops.cache.set('k', { a: 1 }, 60);
    t.deepEqual(await cacheops.cache.get('k'), { a: 1 });
    await cacheops.invalidateObj(p);
    await cacheops.invalidateModel(Post);
    await cacheops.flushStats();
    await cacheops.invalidateAll();
    t.deepEqual((await list()).map((r) => r.get('title')), ['three']);
    // The CLI, on its own connection as the same user.
    const stats = await cli(['stats', '--redis', url, '--prefix', PREFIX]);
    t.is(stats.code, 0, stats.out);
    const reap = await cli(['reap-conjs', '--redis', url, '--prefix', PREFIX]);
    t.is(reap.code, 0, reap.out);
    const db = join(dir, 'cli.sqlite');
    Object.assign(process.env, { REDIS_URL: url, CLI_TEST_PREFIX: PREFIX, CLI_TEST_DB: db });
    const invalidate = await cli(['invalidate', 'Post', '--app', 'test/fixtures/cli-app.ts']);
    t.is(invalidate.code, 0, invalidate.out);
    t.deepEqual(await refusals(), [], 'Redis refused nothing');
    t.deepEqual(logs, [], 'nothing was logged');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await blog.close();
  }
});

/** The documented rules without one command. */
const without = (command: string): string => documentedRules().split(' ').filter((r) => r !== `+${command}`).join(' ');

for (const missing of ['sunion', 'get', 'evalsha', 'client|tracking']) {
  test.serial(`a user lacking ${missing}: one CacheopsPermissionError at start-up, no refused call per request`, async (t) => {
    const url = await createUser(`lacks-${missing.replace('|', '-')}`, without(missing));
    const logs: string[] = [];
    const blog = await blogOn(url, logs, { degradeOnFailure: true });
    const { cacheops, Post } = blog;
    try {
      const error = await t.throwsAsync(cacheops.ready(), { instanceOf: CacheopsPermissionError });
      t.deepEqual(error?.missing, [missing]);
      t.regex(error!.message, new RegExp(`may not run ${missing.replace('|', '\\|')} `));
      await Post.create({ title: 'a', views: 1 });
      const before = await refusedCalls();
      const reads = 40;
      for (let i = 0; i < reads; i += 1) {
        t.is((await Post.findAll({ where: { views: 1 } })).length, 1);
        t.is((await Post.findByPk(1))?.get('title'), 'a');
      }
      // Invalidations are still sent (a failed one is retried every 500 ms): no refusal comes per read.
      const refused = (await refusedCalls()) - before;
      t.true(refused <= 2, `${refused} refused calls during ${2 * reads} reads: ${JSON.stringify(await refusals())}`);
      await Post.create({ title: 'b', views: 1 });
      t.is((await Post.findAll({ where: { views: 1 } })).length, 2);
      t.is(cacheops.stats().hits, 0, 'the cache is bypassed');
      t.is(logs.length, 1, `one log line: ${logs.join(' | ')}`);
      t.regex(logs[0]!, /may not run/);
    } finally {
      await blog.close();
    }
  });
}

test.serial('without degradeOnFailure too, reads are answered by the database (no error per read); granted the command, caching resumes', async (t: ExecutionContext) => {
  const url = await createUser('lacks-get-strict', without('get'));
  const logs: string[] = [];
  const blog = await blogOn(url, logs);
  const { cacheops, Post } = blog;
  try {
    await t.throwsAsync(cacheops.ready(), { instanceOf: CacheopsPermissionError });
    await Post.create({ title: 'a', views: 1 });
    // The near cache's start-up self-test may have been refused its GET once: the reads are what count here.
    const before = await refusedCalls();
    for (let i = 0; i < 10; i += 1) t.is((await Post.findAll({ where: { views: 1 } })).length, 1);
    t.is(cacheops.stats().hits + cacheops.stats().misses, 0, 'the cache was not consulted');
    const error = await t.throwsAsync(cacheops.cache.get('k'), { instanceOf: CacheopsPermissionError });
    t.deepEqual(error?.missing, ['get']);
    t.is(await refusedCalls() - before, 0, 'the reads sent nothing Redis refused');
    t.is(logs.length, 1, 'one log line');
    await server.admin.call('ACL', 'SETUSER', 'lacks-get-strict', '+get');
    const outages = cacheops.core.store.breaker.outages;
    await server.admin.call('CLIENT', 'KILL', 'USER', 'lacks-get-strict');
    await until('the check passes on reconnecting', () => cacheops.core.store.refusal === undefined
      && cacheops.core.store.breaker.outages > outages && !cacheops.core.store.breaker.open && !cacheops.core.outage.bypassing);
    t.regex(logs.at(-1) ?? '', /caching resumed/);
    await Post.findAll({ where: { views: 1 } });
    t.true(await noSql(blog, () => Post.findAll({ where: { views: 1 } })), 'a hit again');
  } finally {
    await blog.close();
  }
});

test.serial('a Redis Cluster under the documented user (+cluster|slots +cluster|info +client|setname): queries and invalidation, nothing refused on any master', async (t) => {
  const cluster = await startPrivateCluster();
  const rules = aclRules({ prefix: PREFIX, cluster: true });
  t.true(documentedRules().split(' ').filter((r) => !['+client|id', '+client|tracking', '+subscribe', '+ping', '+dbsize', '+hgetall', '+scard', '+sscan', '&__redis__:invalidate'].includes(r))
    .concat('+client|setname', '+cluster|info', '+cluster|slots').sort().join(' ') === rules.split(' ').sort().join(' '), `the documented variant: ${rules}`);
  const admins = cluster.ports.map((port) => new IORedis({ port, host: '127.0.0.1' }));
  const client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })), { redisOptions: { username: 'cacheops', password: 'secret' } });
  client.on('error', () => undefined);
  const logs: string[] = [];
  let blog: Blog | undefined;
  try {
    for (const a of admins) {
      await a.call('ACL', 'SETUSER', 'cacheops', 'on', '>secret', ...rules.split(' '));
      await a.call('ACL', 'LOG', 'RESET');
    }
    blog = await makeBlog('sqlite', __filename, {
      redis: client, prefix: PREFIX, degradeOnFailure: false, clusterShards: 6, profiles: { '*': { ops: 'all' } }, logger: (m) => logs.push(m),
    }, 'aclcluster');
    const { cacheops, Post } = blog;
    await cacheops.ready();
    await Post.bulkCreate(Array.from({ length: 12 }, (_, i) => ({ title: `p${i}`, views: i })));
    for (let v = 0; v < 12; v += 1) await Post.findAll({ where: { views: v } });
    for (let v = 0; v < 12; v += 1) t.true(await noSql(blog, () => Post.findAll({ where: { views: v } })), `hit ${v}`);
    await Post.update({ title: 'changed' }, { where: { views: 3 } });
    t.is((await Post.findAll({ where: { views: 3 } }))[0]?.get('title'), 'changed');
    await cacheops.invalidateModel(Post);
    await cacheops.flushStats();
    const refused = (await Promise.all(admins.map((a) => a.call('ACL', 'LOG') as Promise<unknown[]>))).flat();
    t.is(refused.length, 0, JSON.stringify(refused));
    t.deepEqual(logs, []);
  } finally {
    await blog?.close().catch(() => undefined);
    client.disconnect();
    for (const a of admins) a.disconnect();
    await cluster.stop();
  }
});
