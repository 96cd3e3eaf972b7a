import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Sequelize } from 'sequelize';
import { FileCache, installCacheops, type Cacheops } from '../src/index';
import { main, type CliIo } from '../src/cli';
import { indexKeyOfConj, statsKey } from '../src/keys';
import { defineBlog } from './helpers/models';
import { countSql, rawRedis, redisUrl, uniquePrefix } from './helpers/env';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'src', 'cli.ts');
const APP = 'test/fixtures/cli-app.ts';
/** tsx by absolute URL, so that the command also runs from other directories. */
const TSX = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

interface Result { code: number; stdout: string; stderr: string }

/** Runs the real command: `node --import tsx src/cli.ts ...args`. */
function cli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', TSX, CLI, ...args], { cwd: options.cwd ?? ROOT, env: options.env ?? process.env },
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
  t.is(r.stderr, '', 'no progress bar when stderr is not a terminal');
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
  [['stats', '--bogus'], /Unknown option '--bogus'/],
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
  t.is((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['cacheops'], 'dist/cli.js');
});

test('main(): reap-conjs draws a progress bar only on a terminal; the summary line always', async (t) => {
  const prefix = uniquePrefix('clibar');
  const tty = await inProcess(['reap-conjs', '--redis', redisUrl, '--prefix', prefix], true);
  t.is(tty.code, 0);
  t.regex(tty.stderr, /\r\[#+\] ~100% of \d+ keys scanned, 0 dead members removed\n$/);
  t.regex(tty.stdout, /^reap-conjs \(prefix "t-clibar-[0-9a-f]+:"\): checked 0 of 0 conj sets/);
  const pipe = await inProcess(['reap-conjs', '--redis', redisUrl, '--prefix', prefix], false);
  t.is(pipe.code, 0);
  t.is(pipe.stderr, '');
  t.regex(pipe.stdout, /checked 0 of 0 conj sets/);
});
