import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, utimesSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CacheMiss, CacheopsConfigError, CacheopsError, CacheopsSerializationError, FileCache } from '../../src/index';
import { encodeValue } from '../../src/core/serialize';
import { makeBlog } from '../helpers/models';

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-fc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file under dir, relative. */
function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

const fileOf = (dir: string, key: string): string => {
  const h = createHash('sha1').update(`key\0${key}`).digest('hex');
  return join(dir, h.slice(0, 2), h.slice(2, 4), h);
};

test('get/set/delete round-trip; get of a missing key throws CacheMiss', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  await t.throwsAsync(cache.get('nope'), { instanceOf: CacheMiss });
  await cache.set('k', { a: 1, list: [1, 'two', null] });
  t.deepEqual(await cache.get('k'), { a: 1, list: [1, 'two', null] });
  await cache.set('k', 'replaced');
  t.is(await cache.get('k'), 'replaced');
  t.true(await cache.delete('k'));
  t.false(await cache.delete('k'));
  await t.throwsAsync(cache.get('k'), { instanceOf: CacheMiss });
  await t.throwsAsync(cache.get(''), { instanceOf: CacheopsError });
});

test('layout: one file per key under two fan-out levels, header then the serializer bytes', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  const before = Date.now();
  await cache.set('layout', [1, 2, 3], 60);
  const file = fileOf(dir, 'layout');
  t.deepEqual(files(dir), [file.slice(dir.length + 1)]);
  const bytes = readFileSync(file);
  t.is(bytes.subarray(0, 4).toString(), 'COF1');
  const expires = bytes.readDoubleBE(4);
  t.true(expires >= before + 60_000 && expires <= Date.now() + 60_000);
  t.is(bytes.readUInt32BE(12), bytes.length - 16);
  t.deepEqual(bytes.subarray(16), encodeValue([1, 2, 3]));
});

test('the serializer keeps Date, Buffer, BigInt, Map and Set; unserializable values throw and write nothing', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  const value = { when: new Date('2024-05-06T07:08:09.123Z'), bytes: Buffer.from([0, 1, 255]), big: 2n ** 70n, map: new Map([['a', 1]]), set: new Set([1, 2]) };
  await cache.set('typed', value);
  const back = await cache.get<typeof value>('typed');
  t.true(back.when instanceof Date);
  t.is(back.when.toISOString(), value.when.toISOString());
  t.true(Buffer.isBuffer(back.bytes));
  t.deepEqual([...back.bytes], [0, 1, 255]);
  t.is(back.big, 2n ** 70n);
  t.deepEqual([...back.map], [['a', 1]]);
  t.deepEqual([...back.set], [1, 2]);

  class Point { constructor(readonly x: number) {} }
  const before = files(dir);
  await t.throwsAsync(cache.set('fn', { f: () => 1 }), { instanceOf: CacheopsSerializationError });
  await t.throwsAsync(cache.set('cls', new Point(1)), { instanceOf: CacheopsSerializationError, message: /Point/ });
  t.deepEqual(files(dir), before, 'nothing written');
  await t.throwsAsync(cache.get('fn'), { instanceOf: CacheMiss });
});

test('expiry is checked on read: an expired entry is a miss and its file is removed', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  await cache.set('short', 'v', 1);
  await cache.set('long', 'w', 60);
  t.true(existsSync(fileOf(dir, 'short')));
  await sleep(1100);
  await t.throwsAsync(cache.get('short'), { instanceOf: CacheMiss });
  t.false(existsSync(fileOf(dir, 'short')));
  t.is(await cache.get('long'), 'w');
});

test('a torn or foreign file reads as a miss', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  await cache.set('torn', 'x'.repeat(1000));
  truncateSync(fileOf(dir, 'torn'), 500);
  await t.throwsAsync(cache.get('torn'), { instanceOf: CacheMiss });
  await cache.set('foreign', 1);
  writeFileSync(fileOf(dir, 'foreign'), 'not a cache file at all');
  await t.throwsAsync(cache.get('foreign'), { instanceOf: CacheMiss });
});

test('clean() removes expired entries, abandoned temporary files and empty directories, nothing else', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  for (let i = 0; i < 5; i += 1) await cache.set(`old-${i}`, i, 0.1);
  for (let i = 0; i < 3; i += 1) await cache.set(`live-${i}`, i, 60);
  writeFileSync(join(dir, 'README'), 'not ours');
  const liveFolder = join(fileOf(dir, 'live-0'), '..');
  const staleTemp = join(liveFolder, `.${'a'.repeat(40)}.123.abcdef.tmp`);
  const freshTemp = join(liveFolder, `.${'b'.repeat(40)}.124.abcdef.tmp`);
  writeFileSync(staleTemp, 'half');
  writeFileSync(freshTemp, 'being written');
  const hourAgo = new Date(Date.now() - 3_600_000);
  utimesSync(staleTemp, hourAgo, hourAgo);
  await sleep(200);
  t.is(await cache.clean(), 5);
  t.false(existsSync(staleTemp));
  t.true(existsSync(freshTemp), 'a temporary file being written is left alone');
  t.true(existsSync(join(dir, 'README')));
  for (let i = 0; i < 5; i += 1) t.false(existsSync(fileOf(dir, `old-${i}`)));
  for (let i = 0; i < 3; i += 1) t.is(await cache.get(`live-${i}`), i);
  const dirsLeft = readdirSync(dir).filter((n) => n !== 'README').sort();
  const expectedDirs = [...new Set([0, 1, 2].map((i) => fileOf(dir, `live-${i}`).slice(dir.length + 1, dir.length + 3)))].sort();
  t.deepEqual(dirsLeft, expectedDirs, 'empty fan-out directories are removed');
  t.is(await cache.clean(), 0);
  t.is(await new FileCache(join(dir, 'missing')).clean(), 0);
});

test('cached(): by arguments and extra, for a time, with invalidate and key()', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  let calls = 0;
  const square = cache.cached({ timeout: 60 })(async (n: number) => { calls += 1; return n * n; });
  t.is(await square(3), 9);
  t.is(await square(3), 9);
  t.is(calls, 1);
  t.is(await square(4), 16);
  t.is(calls, 2);
  t.true(await square.invalidate(3));
  t.is(await square(3), 9);
  t.is(calls, 3);
  t.is(await square(4), 16);
  t.is(calls, 3, 'invalidate drops only its arguments');

  await t.throwsAsync(square.key(5).get(), { instanceOf: CacheMiss });
  await square.key(5).set(-1);
  t.is(await square.key(5).get(), -1);
  t.is(await square(5), -1, 'a set value is what the function returns');
  t.true(await square.key(5).delete());
  t.is(await square(5), 25);

  let lang = 'en';
  const makeGreeter = (extra: unknown) => cache.cached({ extra })((name: string) => `${String(extra)}:${name}`);
  t.is(await makeGreeter('v1')('a'), 'v1:a');
  t.is(await makeGreeter('v2')('a'), 'v2:a', 'extra is part of the key');
  const seen: unknown[][] = [];
  const byLang = cache.cached({ extra: (...args: unknown[]) => { seen.push(args); return lang; } })((name: string) => `${lang}:${name}`);
  t.is(await byLang('x'), 'en:x');
  lang = 'fr';
  t.is(await byLang('x'), 'fr:x', 'extra as a function of the arguments is evaluated per call');
  t.deepEqual(seen[0], ['x']);

  let shortCalls = 0;
  const short = cache.cached({ timeout: 2 })(() => { shortCalls += 1; return shortCalls; });
  t.is(await short(), 1);
  t.is(await short(), 1);
  await sleep(2100);
  t.is(await short(), 2, 'recomputed after the timeout');

  const one = cache.cached()((n: number) => `one ${n}`);
  const two = cache.cached()((n: number) => `two ${n}`);
  t.is(await one(1), 'one 1');
  t.is(await two(1), 'two 1', 'two functions never share keys');
  const keyed = cache.cached({ key: 'shared-name' })(() => 'first');
  const keyedAgain = cache.cached({ key: 'shared-name' })(() => 'first');
  t.is(await keyed(), 'first');
  await keyed.key().set('stored');
  t.is(await keyedAgain(), 'stored', 'an explicit key with the same function shares entries');
});

test('bad configuration and unwritable directories give clear errors', async (t) => {
  const dir = tempDir(t);
  t.throws(() => new FileCache(''), { instanceOf: CacheopsConfigError });
  t.throws(() => new FileCache(dir, { timeout: 0 }), { instanceOf: CacheopsConfigError, message: /timeout/ });
  t.throws(() => new FileCache(dir, { bogus: 1 } as never), { instanceOf: CacheopsConfigError, message: /bogus/ });
  const cache = new FileCache(dir);
  await t.throwsAsync(cache.set('k', 1, -5), { instanceOf: CacheopsConfigError });
  t.throws(() => cache.cached({ lock: true } as never), { instanceOf: CacheopsConfigError, message: /lock/ });
  t.throws(() => cache.cached()(42 as never), { instanceOf: CacheopsConfigError });

  // Tests run as root, which ignores permission bits: a path through a regular file fails for everyone.
  const plainFile = join(dir, 'plain-file');
  writeFileSync(plainFile, 'x');
  for (const bad of [join(plainFile, 'sub'), plainFile]) {
    const broken = new FileCache(bad);
    const error = await t.throwsAsync(broken.set('k', 1), { instanceOf: CacheopsError });
    t.regex(error!.message, /not a directory/);
    t.true(error!.message.includes(JSON.stringify(bad)), 'the message names the directory');
    await t.throwsAsync(broken.get('k'), { instanceOf: CacheopsError, message: /not a directory/ });
    await t.throwsAsync(broken.clean(), { instanceOf: CacheopsError, message: /not a directory/ });
  }
  t.is(statSync(plainFile).size, 1);
});

test('model instances round-trip with the installation\'s Sequelize; without one they fail clearly', async (t) => {
  const dir = tempDir(t);
  const blog = await makeBlog('sqlite', __filename, {}, 'filecache');
  try {
    const { Post } = blog;
    const post = await Post.create({ title: 'on disk', views: 3, big: 12345678901234567890n.toString() });
    const explicit = new FileCache(dir, { sequelize: blog.sequelize });
    await explicit.set('post', { post, list: [post] });
    const back = await explicit.get<{ post: InstanceType<typeof Post>; list: InstanceType<typeof Post>[] }>('post');
    t.true(back.post instanceof Post);
    t.false(back.post.isNewRecord);
    t.deepEqual(back.post.get({ plain: true }), post.get({ plain: true }));
    t.true(back.list[0] instanceof Post);
    t.true((await new FileCache(dir).get<{ post: unknown }>('post')).post instanceof Post, 'the only installation is found');
  } finally {
    await blog.close();
  }
  await t.throwsAsync(new FileCache(dir).get('post'), { instanceOf: CacheopsSerializationError, message: /Post instance/ });
  await new FileCache(dir).set('plain', { ok: true });
  t.deepEqual(await new FileCache(dir).get('plain'), { ok: true }, 'plain values need no Sequelize');
});

test('concurrent writers in one process: every read is a complete value', async (t) => {
  const dir = tempDir(t);
  const cache = new FileCache(dir);
  const value = (i: number) => ({ i, payload: String(i % 10).repeat(50_000 + i * 100) });
  const ops: Promise<unknown>[] = [];
  const reads: { i: number; payload: string }[] = [];
  await cache.set('same', value(0));
  for (let i = 1; i <= 60; i += 1) {
    ops.push(cache.set('same', value(i)));
    ops.push(cache.get<{ i: number; payload: string }>('same').then((v) => reads.push(v)));
  }
  await Promise.all(ops);
  t.is(reads.length, 60);
  for (const r of reads) t.is(r.payload, value(r.i).payload);
  t.deepEqual(files(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
});

test('concurrent writers in several processes: same and different keys, every read complete', async (t) => {
  const dir = tempDir(t);
  const worker = join(__dirname, '..', 'fixtures', 'file-cache-worker.ts');
  const workers = [1, 2, 3, 4].map((id) => run(process.execPath, ['--import', 'tsx', worker, dir, String(id), '60'], { maxBuffer: 1 << 20 })
    .then(({ stdout }) => JSON.parse(stdout) as { id: number; reads: number; errorCount: number; errors: string[] })
    .catch((error: { stdout?: string; message: string }) => ({ id: -1, reads: 0, errorCount: 1, errors: [error.stdout || error.message] })));
  const results = await Promise.all(workers);
  for (const r of results) {
    t.is(r.errorCount, 0, JSON.stringify(r.errors));
    t.is(r.reads, 120);
  }
  const cache = new FileCache(dir);
  const shared = await cache.get<{ writer: number; payload: string; digest: string }>('shared');
  t.is(createHash('sha1').update(shared.payload).digest('hex'), shared.digest);
  for (const id of [1, 2, 3, 4]) t.is((await cache.get<{ i: number }>(`own-${id}`)).i, 59);
  t.deepEqual(files(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
});
