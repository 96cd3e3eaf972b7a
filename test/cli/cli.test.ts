import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Sequelize } from 'sequelize';
import { FileCache, installCacheops, type Cacheops } from '../../src/index';
import { main, type CliIo } from '../../src/cli/main';
import { indexKeyOfConj, statsKey } from '../../src/core/keys';
import { defineBlog } from '../helpers/models';
import { countSql, rawRedis, redisUrl, uniquePrefix } from '../helpers/env';
import { freePort, startPrivateRedis } from '../helpers/private-redis';
import IORedis from 'ioredis';
import { progress } from '../../src/cli/progress';
import { startExample } from '../../templates-example/server';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const APP = 'test/fixtures/cli-app.ts';
/** tsx by absolute URL, so that the command also runs from other directories. */
const TSX = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

interface Result { code: number; stdout: string; stderr: string }

/** Runs the real command: `node --import tsx src/cli/main.ts ...args`. */
function cli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', TSX, CLI, ...args], { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

type Twin = Awaited<ReturnType<typeof twin>>;

/** The test's side of the fixture app: the same SQLite file and key prefix. */
async function twin(t: ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-cli-'));
  const db = join(dir, 'app.sqlite');
  const prefix = uniquePrefix('cli');
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: db, logging: false });
  const models = defineBlog(sequelize);
  await sequelize.sync({ force: true });
  const cacheops: Cacheops = installCacheops(sequelize, { redis: redisUrl, prefix, profiles: { '*': { ops: 'all' } } });
  const redis = rawRedis();
  t.teardown(async () => {
    await cacheops.invalidateAll();
    await redis.del(statsKey(prefix));
    redis.disconnect();
    await cacheops.close();
    await sequelize.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const keys = async (kind: string): Promise<string[]> => {
    const out: string[] = [];
    for await (const page of redis.scanStream({ match: `${prefix}cacheops:{*}:${kind}*`, count: 1000 })) out.push(...(page as string[]));
    return out.sort();
  };
  const env = { ...process.env, CLI_TEST_DB: db, CLI_TEST_PREFIX: prefix };
  return { dir, prefix, sequelize, cacheops, redis, keys, env, ...models };
}

/** Which of these reads are answered from cache (they are cached again as a side effect). */
async function hits(tw: Twin, reads: Record<string, () => Promise<unknown>>): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  for (const [name, read] of Object.entries(reads)) out[name] = (await countSql(tw.sequelize, read)).sql.length === 0;
  return out;
}

const all = (reads: Record<string, unknown>, value: boolean): Record<string, boolean> => Object.fromEntries(Object.keys(reads).map((k) => [k, value]));

test('invalidate Post.1 | Post | all drop exactly the right entries', async (t) => {
  const tw = await twin(t);
  const { Post, Tag } = tw;
  await Post.create({ title: 'a' });
  await Post.create({ title: 'b' });
  await Tag.create({ name: 't' });
  const reads = {
    id1: () => Post.findAll({ where: { id: 1 } }),
    id2: () => Post.findAll({ where: { id: 2 } }),
    id999: () => Post.findAll({ where: { id: 999 } }),
    titleA: () => Post.findAll({ where: { title: 'a' } }),
    titleB: () => Post.findAll({ where: { title: 'b' } }),
    count: () => Post.count(),
    tags: () => Tag.findAll(),
  };
  t.deepEqual(await hits(tw, reads), all(reads, false));
  t.deepEqual(await hits(tw, reads), all(reads, true));

  let r = await cli(['invalidate', 'Post.1', '--app', APP], { env: tw.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /invalidated what Post id=1 could affect/);
  t.deepEqual(await hits(tw, reads), { id1: false, id2: true, id999: true, titleA: false, titleB: true, count: false, tags: true });

  r = await cli(['invalidate', 'Post.999', '--app', APP], { env: tw.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /not in the database/);
  // Only the primary key is known: every condition on another column (deletedAt too: Post is paranoid) may match.
  t.deepEqual(await hits(tw, reads), { ...all(reads, false), tags: true });

  r = await cli(['invalidate', 'Post', '--app', APP], { env: tw.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /every cached value depending on Post \(table Posts\)/);
  t.deepEqual(await hits(tw, reads), { ...all(reads, false), tags: true });

  t.true((await tw.keys('q:')).length > 0);
  r = await cli(['invalidate', 'all', '--app', APP], { env: tw.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /invalidated everything/);
  t.deepEqual((await tw.keys('')).filter((k) => !k.endsWith(':epochs')), [], 'only the epochs are left');
  t.deepEqual(await hits(tw, reads), all(reads, false));
});

test('reap-conjs removes dead members, empty conj sets and stale index entries', async (t) => {
  const tw = await twin(t);
  const { Post, Tag, redis } = tw;
  await Post.create({ title: 'x' });
  await Tag.create({ name: 't' });
  const valueOf = async (read: () => Promise<unknown>): Promise<string> => {
    const before = new Set(await tw.keys('q:'));
    await read();
    const added = (await tw.keys('q:')).filter((k) => !before.has(k));
    t.is(added.length, 1);
    return added[0]!;
  };
  const kA = await valueOf(() => Post.findAll({ where: { id: 1 } }));
  const kB = await valueOf(() => Post.findAll({ where: { id: 1 }, order: [['title', 'ASC']] }));
  const kC = await valueOf(() => Post.findAll({ where: { title: 'x' } }));
  const kD = await valueOf(() => Tag.findAll());

  const conjsOf = async (): Promise<Map<string, Set<string>>> => {
    const map = new Map<string, Set<string>>();
    for (const key of await tw.keys('conj:')) map.set(key, new Set(await redis.smembers(key)));
    return map;
  };
  const before = await conjsOf();
  const conjWith = (k: string): string[] => [...before].filter(([, m]) => m.has(k)).map(([c]) => c);
  const [conjA] = conjWith(kA);
  const [conjC] = conjWith(kC);
  t.truthy(conjA);
  t.truthy(conjC);
  t.true(before.get(conjA!)!.has(kB), 'A and B share their conjunction');
  t.not(conjA, conjC);

  // Dead members: values deleted behind the conj sets' back. A stale index entry: a conj set name that does not exist.
  await redis.del(kA, kC);
  const indexC = indexKeyOfConj(conjC!)!;
  t.true(await redis.sismember(indexC, conjC!) === 1, 'the index lists the conj set');
  const ghost = conjC!.replace(/title=[^&]*$/, 'title=sghost');
  await redis.sadd(indexC, ghost);

  const dead = new Set([kA, kC]);
  const expectRemoved = [...before.values()].reduce((n, m) => n + [...m].filter((k) => dead.has(k)).length, 0);
  const expectEmptied = [...before.values()].filter((m) => [...m].every((k) => dead.has(k))).length;
  t.true(expectRemoved >= 2);

  // Sets smaller than --min-conj-set-size are skipped; index sets are always checked.
  let r = await cli(['reap-conjs', '--app', APP, '--min-conj-set-size', '3'], { env: tw.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`checked 0 of ${before.size} conj sets.*removed 0 dead members.*removed 1 stale index entries`));
  t.is(await redis.sismember(conjA!, kA), 1, 'a small set is left alone');
  t.is(await redis.sismember(indexC, ghost), 0, 'the ghost entry is gone');

  r = await cli(['reap-conjs', '--app', APP, '--min-conj-set-size', '1', '--chunk-size', '1'], { env: tw.env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`checked ${before.size} of ${before.size} conj sets.*removed ${expectRemoved} dead members, ${expectEmptied} emptied conj sets`));
  t.regex(r.stderr, /^(reap-conjs: \d+ of \d+ keys \(\d+%\) in [\d.]+ s, [\d.]+ keys\/s, \d+ dead members removed\n)*reap-conjs: done, (\d+) of \2 keys \(100%\) in [\d.]+ s, [\d.]+ keys\/s, \d+ dead members removed\n$/, 'plain progress lines when stderr is not a terminal');
  const after = await conjsOf();
  for (const [key, members] of before) {
    const live = [...members].filter((k) => !dead.has(k));
    if (live.length === 0) t.false(after.has(key), `${key} is gone`);
    else t.deepEqual([...after.get(key)!].sort(), live.sort());
  }
  t.false(after.has(conjC!));
  t.is(await redis.sismember(indexC, conjC!), 0, 'the emptied conj set left its index');
  t.is(await redis.exists(kB, kD), 2, 'live values are untouched');

  // The cache keeps working: B is a hit, and a write to post 1 still invalidates it.
  const readB = () => Post.findAll({ where: { id: 1 }, order: [['title', 'ASC']] });
  t.is((await countSql(tw.sequelize, readB)).sql.length, 0);
  await Post.update({ title: 'y' }, { where: { id: 1 } });
  t.is((await countSql(tw.sequelize, readB)).sql.length, 1);
});

test('stats prints key counts by kind, memory, and the hit counts applications flushed', async (t) => {
  const tw = await twin(t);
  const { Post, cacheops } = tw;
  await Post.create({ title: 'a' });
  for (let i = 0; i < 3; i += 1) {
    await Post.findAll({ where: { title: 'a' } });
    await Post.count();
  }
  await cacheops.cache.set('simple-one', 1);
  await cacheops.flushStats();
  await cacheops.flushStats(); // nothing new: adds nothing
  const counters = cacheops.stats();

  const r = await cli(['stats', '--app', APP, '--json'], { env: tw.env });
  t.is(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout) as { prefix: string; keys: Record<string, number>; redis: Record<string, number>; flushed: Record<string, number> };
  t.is(json.prefix, tw.prefix);
  t.is(json.keys['values'], (await tw.keys('q:')).length);
  t.is(json.keys['values'], 2);
  t.is(json.keys['conj'], (await tw.keys('conj:')).length);
  t.is(json.keys['idx'], (await tw.keys('idx:')).length);
  t.is(json.keys['schemes'], (await tw.keys('schemes:')).length);
  t.is(json.keys['simple'], 1);
  t.is(json.keys['total'], (await tw.keys('')).length);
  t.true(json.redis['usedMemory']! > 0);
  t.true(Number.isInteger(json.redis['keyspaceHits']));
  t.is(json.flushed['hits'], counters.hits);
  t.is(json.flushed['misses'], counters.misses);
  t.is(counters.hits, 4);

  const text = await cli(['stats', '--app', APP], { env: tw.env });
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /values \(q:\)\s+2\n/);
  t.regex(text.stdout, /Redis used memory \(whole server\): [\d.]+ \w+ \(\d+ bytes\)/);
  t.regex(text.stdout, /Redis keyspace hits\/misses \(whole server, every client and key\): \d+ \/ \d+/);
  t.regex(text.stdout, new RegExp(`flushed by applications \\(cacheops.flushStats\\(\\)\\): ${counters.hits} hits / ${counters.misses} misses \\(${((100 * counters.hits) / (counters.hits + counters.misses)).toFixed(1)}% hits\\)`));

  const direct = await cli(['stats', '--redis', redisUrl, '--prefix', tw.prefix, '--json']);
  t.is(direct.code, 0, direct.stderr);
  t.deepEqual((JSON.parse(direct.stdout) as typeof json).keys, json.keys, '--redis/--prefix sees the same keys');
});

test('clean-file-cache removes expired entries (dir argument, CACHEOPS_FILE_CACHE_DIR, ./.cache/cacheops)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-clean-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fill = async (path: string): Promise<FileCache> => {
    const cache = new FileCache(path);
    await cache.set('old-1', 1, 0.05);
    await cache.set('old-2', 2, 0.05);
    await cache.set('live', 3, 600);
    return cache;
  };
  const explicit = await fill(join(dir, 'explicit'));
  const fromEnv = await fill(join(dir, 'from-env'));
  mkdirSync(join(dir, 'app'));
  const byDefault = await fill(join(dir, 'app', '.cache', 'cacheops'));
  await new Promise((r) => setTimeout(r, 100));

  const env = { ...process.env };
  delete env['CACHEOPS_FILE_CACHE_DIR'];
  let r = await cli(['clean-file-cache', join(dir, 'explicit')], { env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /removed 2 expired entries/);
  t.is(await explicit.get('live'), 3);
  r = await cli(['clean-file-cache', join(dir, 'explicit')], { env });
  t.regex(r.stdout, /removed 0 expired entries/);

  r = await cli(['clean-file-cache'], { env: { ...env, CACHEOPS_FILE_CACHE_DIR: join(dir, 'from-env') } });
  t.regex(r.stdout, /removed 2 expired entries/);
  t.is(await fromEnv.get('live'), 3);

  r = await cli(['clean-file-cache'], { env, cwd: join(dir, 'app') });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /removed 2 expired entries from \.cache\/cacheops/);
  t.is(await byDefault.get('live'), 3);

  r = await cli(['clean-file-cache', join(dir, 'nowhere')], { env });
  t.is(r.code, 0);
  t.regex(r.stdout, /does not exist/);
});

/** Runs main() in this process, capturing its output. */
async function inProcess(args: readonly string[], isTTY = false): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s), isTTY }, env: {}, cwd: ROOT };
  const code = await main(args, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const BAD: [string[], RegExp][] = [
  [[], /no command given/],
  [['frobnicate'], /unknown command "frobnicate"/],
  [['invalidate'], /needs a target/],
  [['invalidate', 'Post'], /--app/],
  [['invalidate', 'Post.', '--app', APP], /bad target "Post\."/],
  [['invalidate', '.3', '--app', APP], /bad target/],
  [['invalidate', 'Post', '--app', 'test/fixtures/missing.ts'], /no such file/],
  [['invalidate', 'Post', '--app', 'test/fixtures/not-an-app.ts'], /exports no Sequelize/],
  [['reap-conjs'], /--app .*--redis/],
  [['reap-conjs', '--redis', redisUrl, '--chunk-size', 'lots'], /--chunk-size expects an integer/],
  [['reap-conjs', '--redis', redisUrl, '--chunk-size', '0'], /--chunk-size expects an integer >= 1/],
  [['reap-conjs', '--min-conj-set-size', '-1', '--redis', redisUrl], /min-conj-set-size/],
  [['stats', '--bogus'], /unknown option --bogus\n/],
  [['stats', '--prefx', 'p'], /unknown option --prefx: did you mean --prefix\?/],
  [['stast'], /unknown command "stast": did you mean "stats"\?/],
  [['stats', '--prefix', 'x'], /--prefix goes with --redis/],
  [['stats', '--app', APP, '--redis', redisUrl], /not both/],
  [['stats', '--redis', 'http://nope'], /--redis: .*unsupported URL/],
  [['clean-file-cache', 'a', 'b'], /unexpected argument "b"/],
  [['clean-file-cache', '--json'], /--json does not apply to clean-file-cache/],
];

function checkBad(t: ExecutionContext, args: readonly string[], message: RegExp, r: Result): void {
  t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
  t.regex(r.stderr, message, args.join(' '));
  t.regex(r.stderr, /cacheops --help/);
  t.is(r.stdout, '');
}

test('bad arguments: a clear message and exit code 2 (main)', async (t) => {
  for (const [args, message] of BAD) checkBad(t, args, message, await inProcess(args));
});

test('bad arguments: the real binary exits with code 2', async (t) => {
  const cases: [string[], RegExp][] = [
    BAD[0]!, BAD[1]!, BAD[4]!, BAD[12]!,
    // These load the application first.
    [['invalidate', 'Nope.3', '--app', APP], /unknown model "Nope" \(known: Author, Category, Comment, Post, PostTag, Tag\)/],
    [['invalidate', 'Psot.3', '--app', APP], /unknown model "Psot": did you mean "Post"\? \(known: Author, /],
    [['invalidate', 'Post.abc', '--app', APP], /bad primary key "abc"/],
  ];
  const results = await Promise.all(cases.map(([args]) => cli(args)));
  results.forEach((r, i) => checkBad(t, cases[i]![0], cases[i]![1], r));
});

test('--help, and the binary starts with a node shebang', async (t) => {
  const r = await cli(['--help']);
  t.is(r.code, 0);
  for (const word of ['invalidate <Model.pk | Model | all>', 'reap-conjs', '--min-conj-set-size', 'clean-file-cache [dir]', 'stats', '--app']) {
    t.true(r.stdout.includes(word), word);
  }
  t.true(readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n'));
  t.true(existsSync(join(ROOT, 'package.json')));
  t.is((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['cacheops'], 'dist/cli/main.js');
});

test('main(): reap-conjs draws a bar on a terminal, plain lines elsewhere; the summary line always', async (t) => {
  const prefix = uniquePrefix('clibar');
  const tty = await inProcess(['reap-conjs', '--redis', redisUrl, '--prefix', prefix], true);
  t.is(tty.code, 0);
  t.regex(tty.stderr, /\r\x1b\[K\[#{30}\] (\d+) of \1 keys \(100%\) in [\d.]+ s, [\d.]+ keys\/s, 0 dead members removed\n$/);
  t.regex(tty.stdout, /^reap-conjs \(prefix "t-[a-z0-9]+-[0-9a-f]+-clibar-[0-9a-f]+:"\): checked 0 of 0 conj sets/);
  const pipe = await inProcess(['reap-conjs', '--redis', redisUrl, '--prefix', prefix], false);
  t.is(pipe.code, 0);
  t.regex(pipe.stderr, /^(reap-conjs: \d+ of \d+ keys .*\n)*reap-conjs: done, (\d+) of \2 keys \(100%\) in [\d.]+ s, [\d.]+ keys\/s, 0 dead members removed\n$/);
  t.false(pipe.stderr.includes('\r'));
  t.regex(pipe.stdout, /checked 0 of 0 conj sets/);
});

test('progress: plain lines at most once a second with counts and rate, then a final line', (t) => {
  let clock = 0;
  const lines: string[] = [];
  const p = progress({ write: (s: string) => lines.push(s) }, { label: 'reap-conjs', unit: 'keys', now: () => clock });
  for (let done = 0; done <= 5000; done += 250) {
    clock += 100; // 250 keys per 100 ms: 2500 keys/s
    p.update({ done, total: 5000, detail: `${done / 250} dead members removed` });
  }
  p.finish({ done: 5000, total: 5000, detail: '20 dead members removed' });
  t.deepEqual(lines, [
    'reap-conjs: 2250 of 5000 keys (45%) in 1.0 s, 2250 keys/s, 9 dead members removed\n',
    'reap-conjs: 4750 of 5000 keys (95%) in 2.0 s, 2375 keys/s, 19 dead members removed\n',
    'reap-conjs: done, 5000 of 5000 keys (100%) in 2.1 s, 2381 keys/s, 20 dead members removed\n',
  ]);
  // A quiet command (stats) prints nothing when it is done within the interval.
  const quiet: string[] = [];
  const q = progress({ write: (s: string) => quiet.push(s) }, { label: 'stats', unit: 'keys', alwaysFinish: false, now: () => 0 });
  q.update({ done: 10, total: 10 });
  q.finish({ done: 10, total: 10 });
  t.deepEqual(quiet, []);
});

test('a Redis that does not answer: one line, exit code 1 (--redis and --app, every Redis command)', async (t) => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const line = `cacheops: cannot reach Redis at 127.0.0.1:${port} (ECONNREFUSED)\n`;
  const runs = await Promise.all([
    cli(['stats', '--redis', url]),
    cli(['reap-conjs', '--redis', url, '--prefix', 'p:']),
    cli(['stats', '--app', APP], { env: { ...process.env, REDIS_URL: url } }),
    cli(['invalidate', 'all', '--app', APP], { env: { ...process.env, REDIS_URL: url } }),
    inProcess(['stats', '--redis', url, '--json']),
  ]);
  for (const r of runs) {
    t.is(r.code, 1);
    // With --app, the application's cacheops logs the outage first, in the same one-line form.
    const own = new RegExp(`^\\[cacheops\\] Redis unavailable: ECONNREFUSED 127\\.0\\.0\\.1:${port} [^\\n]*\\n`);
    t.is(r.stderr.replace(own, ''), line);
    t.is(r.stdout, '');
  }
});

test('stats lists every prefix it finds (keys and cacheops:prefixes) with counts by kind', async (t) => {
  const tw = await twin(t);
  const { Post, Tag } = tw;
  await Post.create({ title: 'a' });
  await Post.findAll({ where: { title: 'a' } });
  await Post.count();
  // A second installation under another prefix, and one with a prefix function (registered in cacheops:prefixes).
  const other = uniquePrefix('cliother');
  const byTable = uniquePrefix('clifn');
  const open = (prefix: string | (() => string)): Cacheops => {
    const sequelize = new Sequelize({ dialect: 'sqlite', storage: join(tw.dir, 'app.sqlite'), logging: false });
    defineBlog(sequelize);
    return installCacheops(sequelize, { redis: redisUrl, prefix, profiles: { '*': { ops: 'all' } } });
  };
  const second = open(other);
  const third = open(() => byTable);
  t.teardown(async () => {
    for (const c of [second, third]) {
      await c.invalidateAll();
      await c.close();
      await c.sequelize.close();
    }
    await tw.redis.srem('cacheops:prefixes', byTable);
  });
  await (second.sequelize.models['Tag'] as typeof Tag).findAll();
  await (third.sequelize.models['Tag'] as typeof Tag).findAll();
  await tw.cacheops.flushStats();

  type Json = { prefix: string | null; keys: Record<string, number>; flushed: Record<string, number> | null; prefixes: { prefix: string; registered: boolean; selected: boolean; keys: Record<string, number>; flushed: Record<string, number> | null }[] };
  const count = async (prefix: string, kind: string): Promise<number> => {
    let n = 0;
    for await (const page of tw.redis.scanStream({ match: `${prefix}cacheops:{*}:${kind}*`, count: 1000 })) n += (page as string[]).length;
    return n;
  };
  const all = await cli(['stats', '--redis', redisUrl, '--json']);
  t.is(all.code, 0, all.stderr);
  const json = JSON.parse(all.stdout) as Json;
  t.is(json.prefix, null, 'no --prefix: every prefix');
  const entry = (j: Json, prefix: string) => j.prefixes.find((p) => p.prefix === prefix);
  for (const prefix of [tw.prefix, other, byTable]) {
    const e = entry(json, prefix);
    t.truthy(e, `${prefix} is listed`);
    t.is(e?.keys['values'], await count(prefix, 'q:'), prefix);
    t.is(e?.keys['conj'], await count(prefix, 'conj:'), prefix);
    t.is(e?.keys['total'], await count(prefix, ''), prefix);
    t.true(e?.selected);
  }
  t.is(entry(json, tw.prefix)?.keys['values'], 2);
  t.is(entry(json, other)?.keys['values'], 1);
  t.deepEqual([tw.prefix, other, byTable].map((p) => entry(json, p)?.registered), [false, false, true], 'only the prefix function registers');
  t.is(entry(json, tw.prefix)?.flushed?.['misses'], tw.cacheops.stats().misses, 'flushed counters by prefix');
  t.is(entry(json, other)?.flushed, null);

  const one = await cli(['stats', '--redis', redisUrl, '--prefix', other, '--json']);
  const oneJson = JSON.parse(one.stdout) as Json;
  t.is(oneJson.prefix, other);
  t.is(oneJson.keys['values'], 1);
  t.deepEqual(oneJson.prefixes.filter((p) => p.selected).map((p) => p.prefix), [other]);
  t.truthy(entry(oneJson, tw.prefix), 'the other prefixes are still listed');

  const text = await cli(['stats', '--redis', redisUrl, '--prefix', other]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, new RegExp(`cacheops keys \\(prefix "${other}"\\):\n  values \\(q:\\)\\s+1\n`));
  t.regex(text.stdout, /Prefixes found in this Redis: \d+; the selected one \(r: registered in cacheops:prefixes\):/);
  const row = (prefix: string): string | undefined => text.stdout.split('\n').find((l) => /^  [r ] "/.test(l) && l.includes(`"${prefix}"`));
  t.regex(row(other) ?? '', new RegExp(`^    "${other}"\\s+1\\s`));
  t.is(row(byTable), undefined, '--prefix lists only its prefix');
  t.is(row(tw.prefix), undefined, '--prefix lists only its prefix');
  t.regex(text.stdout, /\(\d+ other prefix(es)? in this Redis, not counted above; without --prefix they are listed\)/);
});

test('stats lists at most 20 prefixes, those with most keys, and one line for the rest', async (t) => {
  const redis = await startPrivateRedis();
  const client = new IORedis(redis.url);
  t.teardown(async () => {
    client.disconnect();
    await redis.stop();
  });
  // 25 prefixes: p00 has 25 keys, p01 24, ... p24 1; one registered by a prefix function.
  for (let i = 0; i < 25; i += 1) {
    const prefix = `p${String(i).padStart(2, '0')}:`;
    for (let k = 0; k < 25 - i; k += 1) await client.set(`${prefix}cacheops:{0}:q:${k}`, 'x');
  }
  await client.sadd('cacheops:prefixes', 'p03:');
  const text = await cli(['stats', '--redis', redis.url]);
  t.is(text.code, 0, text.stderr);
  const rows = text.stdout.split('\n').filter((l) => /^  [r ] "/.test(l));
  t.deepEqual(rows.map((l) => /"([^"]+)"/.exec(l)?.[1]), Array.from({ length: 20 }, (_, i) => `p${String(i).padStart(2, '0')}:`), 'the 20 with most keys, most first');
  t.regex(rows[3]!, /^  r "p03:"\s+22\s/);
  t.regex(text.stdout, /Prefixes found in this Redis: 25, the 20 with most keys listed/);
  t.regex(text.stdout, /\n  \.\.\. and 5 more prefixes with 15 keys \(--json lists every one\)\n/);
  const json = JSON.parse((await cli(['stats', '--redis', redis.url, '--json'])).stdout) as { prefixes: unknown[] };
  t.is(json.prefixes.length, 25, '--json lists every prefix');
  const one = await cli(['stats', '--redis', redis.url, '--prefix', 'p24:']);
  t.is(one.stdout.split('\n').filter((l) => /^  [r ] "/.test(l)).length, 1);
  t.regex(one.stdout, /\(24 other prefixes in this Redis, not counted above/);
});

test('the commands docs/operations.md shows against the running example work as written', async (t) => {
  const readme = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
  const commands = readme.split('\n').filter((l) => l.startsWith('npx tsx src/cli/main.ts ')).map((l) => l.slice('npx tsx src/cli/main.ts '.length).split(/\s+/));
  t.true(commands.some((c) => c[0] === 'stats'), 'docs/operations.md shows stats');
  t.true(commands.some((c) => c[0] === 'invalidate'), 'docs/operations.md shows invalidate');
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-example-cli-'));
  const storage = join(dir, 'blog.sqlite');
  const prefix = uniquePrefix('exCli');
  const running = await startExample(0, { storage, prefix, redisUrl });
  const redis = rawRedis();
  t.teardown(async () => {
    await running.example.cacheops.invalidateAll();
    await redis.del(statsKey(prefix));
    await running.close();
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { ...process.env, EXAMPLE_DB: storage, EXAMPLE_PREFIX: prefix, REDIS_URL: redisUrl };
  const values = async (): Promise<number> => {
    let n = 0;
    for await (const page of redis.scanStream({ match: `${prefix}cacheops:{*}:q:*`, count: 1000 })) n += (page as string[]).length;
    return n;
  };
  for (const args of commands) {
    for (const path of ['/', '/posts/1', '/posts/2', '/authors']) t.is((await fetch(`${running.url}${path}`)).status, 200);
    const before = await values();
    t.true(before > 0);
    const r = await cli(args, { env });
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    if (args[0] === 'stats') {
      t.regex(r.stdout, new RegExp(`cacheops keys \\(prefix "${prefix}"\\):\\n  values \\(q:\\)\\s+${before}\\n`), 'stats sees the running example\'s keys');
    } else {
      t.true(await values() < before, `${args.join(' ')} dropped cached values`);
      t.regex(r.stdout, /^invalidated /);
    }
  }
  // Loading the module changed nothing in the running example: its data is still there.
  const res = await fetch(`${running.url}/posts/1`);
  t.regex(await res.text(), /Caching without stale reads/);
});
