/**
 * Every ```ts block of README.md and of the pages in docs/ runs as written: each block becomes a module
 * of a fresh project that installed the packed package (test/helpers/consumer.ts),
 * all of them are type-checked with `--strict` (module nodenext, ESM), then each
 * runs with node against its own redis-server and SQLite. A block must exit by
 * itself (nothing left open), with code 0 and no warning on stderr (Sequelize's
 * DEP0170 for a 'sqlite::memory:' URL, say). A block marked ```ts no-run is a
 * block that needs more than Redis and SQLite (a PostgreSQL server with logical
 * replication, say): it is type-checked but not run; NO_RUN_ALLOWED bounds how many there are.
 */
import test from 'ava';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { command, installConsumer, packTarball, root, STRICT, typecheck, workDir, type Consumer } from '../helpers/consumer';
import { startPrivateRedis, type PrivateRedis } from '../helpers/private-redis';

/** Blocks that cannot run here; each says why in the text around it. */
const NO_RUN_ALLOWED = 1;

interface Block { readonly doc: string; readonly line: number; readonly info: string; readonly code: string }

/** The documents whose blocks run: the README and every page of docs/. */
const DOCS = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];

function docBlocks(doc: string): Block[] {
  const text = readFileSync(join(root, doc), 'utf8');
  const blocks: Block[] = [];
  for (const m of text.matchAll(/^```(ts|typescript)([^\n]*)\n([\s\S]*?)^```[ \t]*$/gm)) {
    const line = text.slice(0, m.index).split('\n').length;
    blocks.push({ doc, line, info: (m[2] ?? '').trim(), code: m[3] ?? '' });
  }
  return blocks;
}

const blocks = DOCS.flatMap(docBlocks);
const runnable = blocks.filter((b) => b.info !== 'no-run');
const fileOf = (b: Block): string => `${b.doc.replace(/\.md$/, '').replace(/[^a-z0-9]+/gi, '-').toLowerCase()}-line-${b.line}`;

const work = workDir();
let project: Promise<Consumer> | undefined;
let redis: PrivateRedis | undefined;

function consumer(): Promise<Consumer> {
  project ??= packTarball(work).then(async (tarball) => {
    const c = await installConsumer(work, tarball, {
      name: 'readme', typescript: 'latest', typesNode: 'latest',
      extra: ['express@5', '@types/express@5', 'nunjucks@3', '@types/nunjucks@3'],
    });
    for (const b of blocks) writeFileSync(join(c.dir, `${fileOf(b)}.mts`), b.code);
    const out = await typecheck(c, 'tsconfig.json', { ...STRICT, module: 'nodenext', moduleResolution: 'nodenext', outDir: 'out' },
      blocks.map((b) => `${fileOf(b)}.mts`));
    return { ...c, typecheck: out } as Consumer & { typecheck: typeof out };
  });
  return project;
}

test.before(async () => {
  redis = await startPrivateRedis();
});

test.after.always(async () => {
  await redis?.stop();
  rmSync(work, { recursive: true, force: true });
});

test.serial('README.md is at most 250 lines; every relative link of it and of docs/ names a file of the repository', (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  t.true(readme.split('\n').length <= 250, `${readme.split('\n').length} lines`);
  for (const doc of DOCS) {
    const text = readFileSync(join(root, doc), 'utf8');
    t.notRegex(text, /SPEC\.md/, `${doc} names no SPEC.md (it is not in the repository)`);
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/i.test(target)) continue;
      t.true(existsSync(join(root, dirname(doc), target)), `${doc} links ${target}`);
    }
  }
});

test.serial('README.md and docs/: the ```ts blocks are found, and nearly all of them run', (t) => {
  t.true(blocks.filter((b) => b.doc === 'README.md').length >= 2, `${blocks.length} blocks`);
  t.true(blocks.length >= 8, `${blocks.length} blocks`);
  t.true(blocks.length - runnable.length <= NO_RUN_ALLOWED, `no-run blocks: ${blocks.filter((b) => b.info === 'no-run').map((b) => `${b.doc}:${b.line}`).join(', ')}`);
});

test.serial('README.md and docs/: every ```ts block type-checks (tsc --strict, nodenext, packed package)', async (t) => {
  t.timeout(600_000);
  const c = (await consumer()) as Consumer & { typecheck: { code: number; stdout: string; stderr: string } };
  t.log(`TypeScript ${c.typescript}, @types/node ${c.typesNode}`);
  t.is(c.typecheck.code, 0, `${c.typecheck.stdout}${c.typecheck.stderr}`);
});

for (const block of runnable) {
  test.serial(`${block.doc} line ${block.line}: the block runs against Redis and SQLite`, async (t) => {
    t.timeout(600_000);
    const c = await consumer();
    const out = await command(process.execPath, [join('out', `${fileOf(block)}.mjs`)], c.dir, { REDIS_URL: redis!.url }, 90_000);
    if (out.stdout.trim()) t.log(out.stdout.trim());
    t.is(out.code, 0, out.stderr);
    t.is(out.stderr.trim(), '', 'nothing on stderr (no warning)');
  });
}
