/**
 * The package as a new user installs it: `npm pack`, the tarball installed into
 * fresh projects, a consumer type-checked with `--strict` and no skipLibCheck
 * under `module: nodenext` as ESM (.mts) and as CommonJS (.cts), with the newest
 * TypeScript and @types/node and with the oldest this package supports (README,
 * "Requirements"), then run from ESM and CommonJS against Redis and SQLite.
 * Needs `npm run build` first (`npm test` does it) and the npm registry or cache.
 */
import test from 'ava';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { uniquePrefix, redisUrl } from '../helpers/env';
import { command, installConsumer, packTarball, root, STRICT, typecheck, workDir, type Consumer, type ConsumerSpec } from '../helpers/consumer';

/** The oldest supported versions, as package.json's peerDependencies and the README state them. */
const OLDEST: ConsumerSpec = { name: 'oldest', typescript: '5.0.4', typesNode: '18' };
const MATRIX: readonly ConsumerSpec[] = [
  { name: 'newest', typescript: 'latest', typesNode: 'latest' },
  // The last TypeScript written in TypeScript, with the newest @types/node (the combination of the report).
  { name: 'ts5.9', typescript: '5.9', typesNode: 'latest' },
  OLDEST,
];
/** An application on ioredis 6 (the newest TypeScript): its clients are accepted as `redis`. */
const IOREDIS6: ConsumerSpec = { name: 'ioredis6', typescript: 'latest', typesNode: 'latest', extra: ['ioredis@6', '@types/redis-errors'] };

const work = workDir();
const fixtures = join(root, 'test', 'fixtures', 'consumer');
const consumers = new Map<string, Promise<Consumer>>();
let tarball: Promise<string> | undefined;

function consumer(spec: ConsumerSpec): Promise<Consumer> {
  let c = consumers.get(spec.name);
  if (!c) {
    tarball ??= packTarball(work);
    c = tarball.then(async (file) => {
      const installed = await installConsumer(work, file, spec);
      for (const ext of ['mts', 'cts']) copyFileSync(join(fixtures, 'consumer.source.ts'), join(installed.dir, `consumer.${ext}`));
      for (const ext of ['mts', 'cts']) copyFileSync(join(fixtures, 'ioredis6.source.ts'), join(installed.dir, `ioredis6.${ext}`));
      for (const name of ['plain.cjs', 'plain.mjs']) copyFileSync(join(fixtures, name), join(installed.dir, name));
      return installed;
    });
    consumers.set(spec.name, c);
  }
  return c;
}

// The projects install side by side while the first tests wait for theirs (each test reports its own failure).
for (const spec of [...MATRIX, IOREDIS6]) consumer(spec).catch(() => undefined);

test.after.always(() => rmSync(work, { recursive: true, force: true }));

const NODENEXT = { ...STRICT, module: 'nodenext', moduleResolution: 'nodenext', outDir: 'out' };

for (const spec of MATRIX) {
  test.serial(`consumer (${spec.name}): the tarball's types pass tsc --strict without skipLibCheck, ESM and CommonJS (module nodenext)`, async (t) => {
    t.timeout(600_000);
    const c = await consumer(spec);
    t.log(`TypeScript ${c.typescript}, @types/node ${c.typesNode}`);
    const out = await typecheck(c, 'tsconfig.json', NODENEXT, ['consumer.mts', 'consumer.cts']);
    t.is(out.code, 0, `tsc: ${out.stdout}${out.stderr}`);
    t.is(out.stdout.trim(), '', 'no diagnostics');
  });
}

test.serial('consumer (ioredis 6): an application\'s ioredis 6 Redis (RESP3 and RESP2) and Cluster pass as `redis`, tsc --strict without skipLibCheck, ESM and CommonJS', async (t) => {
  t.timeout(600_000);
  const c = await consumer(IOREDIS6);
  const out = await typecheck(c, 'tsconfig.ioredis6.json', { ...NODENEXT, noEmit: true }, ['ioredis6.mts', 'ioredis6.cts']);
  t.is(out.code, 0, `tsc: ${out.stdout}${out.stderr}`);
  t.is(out.stdout.trim(), '', 'no diagnostics');
});

test.serial('consumer (oldest): also with the classic CommonJS setup (module commonjs, moduleResolution node)', async (t) => {
  t.timeout(600_000);
  const c = await consumer(OLDEST);
  const out = await typecheck(c, 'tsconfig.node10.json', { ...STRICT, module: 'commonjs', moduleResolution: 'node', noEmit: true }, ['consumer.cts']);
  t.is(out.code, 0, `tsc: ${out.stdout}${out.stderr}`);
});

interface Report {
  module: string;
  titles: string[][];
  hitIsInstance: boolean;
  sqlOnHit: number;
  count: number;
  reads: string[];
  invalidated: string[];
  stats: Record<string, number>;
  configError: string;
}

for (const [file, module] of [['out/consumer.mjs', 'esm'], ['out/consumer.cjs', 'commonjs']] as const) {
  test.serial(`consumer (newest): the compiled ${module} consumer runs against Redis and SQLite`, async (t) => {
    t.timeout(600_000);
    const c = await consumer(MATRIX[0]!);
    // The type-check test emitted out/; compile again in case it ran in another order.
    const built = await typecheck(c, 'tsconfig.json', NODENEXT, ['consumer.mts', 'consumer.cts']);
    t.is(built.code, 0, built.stdout);
    const out = await command(process.execPath, [file], c.dir, { REDIS_URL: redisUrl, CONSUMER_PREFIX: uniquePrefix(`consumer${module}`) }, 60_000);
    t.is(out.code, 0, out.stderr);
    t.log(out.stdout.trim());
    const report = JSON.parse(out.stdout.trim().split('\n').pop()!) as Report;
    t.is(report.module, module);
    t.deepEqual(report.titles, [['a'], ['a'], ['a', 'c']], 'miss, hit, and the read after the create sees the new row');
    t.true(report.hitIsInstance, 'a hit gives Post instances');
    t.is(report.sqlOnHit, 0, 'a hit runs no SQL');
    t.is(report.count, 2);
    t.deepEqual(report.reads, ['fetch miss', 'fetch hit', 'fetch miss', 'count miss']);
    t.deepEqual(report.invalidated, ['Posts']);
    t.like(report.stats, { hits: 1, misses: 3, stores: 3 });
    t.is(report.configError, 'redisTimeout: expected a positive integer, got "1000" (a string)');
  });
}

for (const [file, module] of [['plain.cjs', 'commonjs'], ['plain.mjs', 'esm']] as const) {
  test.serial(`consumer (newest): plain JavaScript (${module}): an unknown key of the cacheops find option rejects, naming it`, async (t) => {
    t.timeout(600_000);
    const c = await consumer(MATRIX[0]!);
    const out = await command(process.execPath, [file], c.dir, { REDIS_URL: redisUrl, CONSUMER_PREFIX: uniquePrefix(`plain${module}`) }, 60_000);
    t.is(out.code, 0, out.stderr);
    t.log(out.stdout.trim());
    t.deepEqual(JSON.parse(out.stdout.trim()), {
      module,
      configError: true,
      key: 'cacheops.opz',
      message: 'cacheops.opz: unknown key of the cacheops find option: did you mean "ops"? (known: ops, timeout, lock)',
    });
  });
}
