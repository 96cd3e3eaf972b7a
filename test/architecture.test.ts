/**
 * The shape of src/: no value-import circles (a circle makes module load order
 * decide which side sees `undefined`), and ARCHITECTURE.md names only files
 * that exist, so a reader can follow it against the code. The shape of test/:
 * its folders mirror src/'s (ARCHITECTURE.md, "Tests"), and the test paths the
 * documents name exist.
 */
import test from 'ava';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';

interface Graph {
  files: number;
  imports: Record<string, string[]>;
  circles: string[][];
  circlesWithTypes: string[][];
  layers: number;
  sequelizeCastFileList: string[];
}
type Analyze = (root?: string) => Graph;

const ROOT = resolve(__dirname, '..');

async function loadAnalyze(): Promise<Analyze> {
  const url = pathToFileURL(join(ROOT, 'scripts', 'import-graph.mjs')).href;
  const mod = (await import(url)) as { analyze: Analyze };
  return mod.analyze;
}

test('src/ has no value-import circles', async (t) => {
  const analyze = await loadAnalyze();
  const graph = analyze(ROOT);
  t.true(graph.files > 40, 'the scan finds the source files');
  t.deepEqual(graph.circles, [], `import circles: ${graph.circles.map((c) => c.join(' <-> ')).join('; ')}`);
});

test('casts into Sequelize objects are made only in the seam over its internals', async (t) => {
  const analyze = await loadAnalyze();
  t.deepEqual(analyze(ROOT).sequelizeCastFileList, ['src/core/sequelize-internals.ts']);
});

test('the cast counter sees a cast into a Sequelize object outside the seam', async (t) => {
  const analyze = await loadAnalyze();
  const root = mkdtempSync(join(tmpdir(), 'import-graph-'));
  try {
    mkdirSync(join(root, 'src', 'core'), { recursive: true });
    writeFileSync(join(root, 'src', 'core', 'sequelize-internals.ts'), 'export const s = (m: object) => (m as unknown as { _schema?: string })._schema;\n');
    writeFileSync(join(root, 'src', 'w.ts'), 'export const p = (m: object) => (m as unknown as { primaryKeys: object }).primaryKeys;\n');
    t.deepEqual(analyze(root).sequelizeCastFileList, ['src/core/sequelize-internals.ts', 'src/w.ts']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the circle detector sees a value circle and ignores a type-only one', async (t) => {
  const analyze = await loadAnalyze();
  const root = mkdtempSync(join(tmpdir(), 'import-graph-'));
  try {
    mkdirSync(join(root, 'src', 'sub'), { recursive: true });
    writeFileSync(join(root, 'src', 'a.ts'), "import { b } from './sub/b';\nexport const a = () => b;\n");
    writeFileSync(join(root, 'src', 'sub', 'b.ts'), "export const b = 1;\nexport async function later() { return import('../a'); }\n");
    writeFileSync(join(root, 'src', 'c.ts'), "import type { D } from './d';\nexport type C = D;\nexport const c = 1;\n");
    writeFileSync(join(root, 'src', 'd.ts'), "import { c } from './c';\nexport type D = typeof c;\n");
    writeFileSync(join(root, 'src', 'e.ts'), "import { type F } from './f';\nexport type E = F;\nexport const e = 1;\n");
    writeFileSync(join(root, 'src', 'f.ts'), "export { e } from './e';\nexport type F = number;\n");
    const graph = analyze(root);
    t.deepEqual(graph.circles, [['src/a.ts', 'src/sub/b.ts']]);
    t.is(graph.circlesWithTypes.length, 3);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

/** The layer table of ARCHITECTURE.md: each .ts file named in a row's Files column -> the row's index. */
function layerRows(text: string): Map<string, number> {
  const rows = text.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| Layer'));
  const rowOf = new Map<string, number>();
  rows.forEach((line, i) => {
    for (const m of (line.split('|')[2] ?? '').matchAll(/src\/[\w./-]+\.ts/g)) rowOf.set(m[0], i);
  });
  return rowOf;
}

test('every file of src/ sits in one layer of ARCHITECTURE.md and imports no value from a layer above', async (t) => {
  const analyze = await loadAnalyze();
  const graph = analyze(ROOT);
  const rowOf = layerRows(readFileSync(join(ROOT, 'ARCHITECTURE.md'), 'utf8'));
  const files = Object.keys(graph.imports);
  t.deepEqual(files.filter((f) => !rowOf.has(f)), [], 'files missing from the layer table of ARCHITECTURE.md: add each to its row');
  const upward: string[] = [];
  for (const from of files) {
    for (const to of graph.imports[from]!) {
      if (rowOf.get(to)! > rowOf.get(from)!) upward.push(`${from} -> ${to}`);
    }
  }
  t.deepEqual(upward, [], 'upward imports');
});

test('every src/ path named in ARCHITECTURE.md exists', (t) => {
  const text = readFileSync(join(ROOT, 'ARCHITECTURE.md'), 'utf8');
  const named = [...new Set(text.match(/\bsrc\/[\w./-]*[\w/]/g) ?? [])];
  t.true(named.length > 20, 'the document names the files it describes');
  const missing = named.filter((path) => !existsSync(join(ROOT, path)));
  t.deepEqual(missing, []);
});

/** The folders of test/ that are not a src/ folder, and the test files that stand at its top (ARCHITECTURE.md, "Tests"). */
const TEST_FOLDERS_BESIDE_SRC = ['package', 'never-stale', 'helpers', 'fixtures', 'types'];
const TOP_TESTS = ['api.test.ts', 'architecture.test.ts', 'smoke.test.ts'];

test('test/ mirrors src/: every test folder is a src/ folder or a named one, and only the named tests stand at the top', (t) => {
  const entries = readdirSync(join(ROOT, 'test'), { withFileTypes: true });
  const srcFolders = readdirSync(join(ROOT, 'src'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  const folders = entries.filter((e) => e.isDirectory()).map((e) => e.name);
  t.deepEqual(folders.filter((f) => !srcFolders.includes(f) && !TEST_FOLDERS_BESIDE_SRC.includes(f)), [], 'folders that mirror nothing');
  t.deepEqual(entries.filter((e) => e.isFile() && e.name.endsWith('.test.ts') && !TOP_TESTS.includes(e.name)).map((e) => e.name), [],
    'tests at the top of test/ that belong in a folder');
});

test('every test/ path named in ARCHITECTURE.md and docs/ exists', (t) => {
  const docs = ['ARCHITECTURE.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
  const named = [...new Set(docs.flatMap((doc) => readFileSync(join(ROOT, doc), 'utf8').match(/\btest\/[\w./-]*\.ts\b/g) ?? []))];
  t.true(named.length > 10, 'the documents name test files');
  t.deepEqual(named.filter((path) => !existsSync(join(ROOT, path))), []);
});

test('the repository type-checks: src/, test/, bench/ and the example under the strict settings (tsconfig.check.json)', (t) => {
  // tsx runs the tests without checking their types, so a type error in a test or a benchmark would otherwise go unseen.
  t.timeout(600_000);
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.check.json'), '--noEmit'], { cwd: ROOT, encoding: 'utf8' });
  t.is(run.status, 0, `tsc -p tsconfig.check.json:\n${run.stdout}${run.stderr}`);
});
