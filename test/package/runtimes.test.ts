/**
 * What docs/clients.md says about runtimes and Sequelize releases is what
 * package.json declares and CI tests (scripts/ci-matrix.sh); no test, benchmark, example or doc
 * builds a Sequelize from the 'sqlite::memory:' URL that Node 26 rejects.
 */
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
const read = (file: string): string => readFileSync(join(root, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; peerDependencies: Record<string, string> };
const doc = read('docs/clients.md');
const ci = read('scripts/ci-matrix.sh');

function files(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(join(root, dir))) {
    const path = join(dir, entry);
    if (entry === 'node_modules') continue;
    if (statSync(join(root, path)).isDirectory()) files(path, out);
    else if (/\.(ts|mts|cts|js|mjs|cjs|md)$/.test(entry)) out.push(path);
  }
  return out;
}

test('no Sequelize is built from a sqlite: URL (Node 26 throws in its URL parse)', (t) => {
  const urlForm = /new Sequelize\(\s*['"`]sqlite:/;
  const found = ['test', 'bench', 'templates-example', 'docs', 'scripts'].flatMap((d) => files(d)).concat(['README.md'])
    .filter((f) => join(root, f) !== __filename && urlForm.test(read(f)));
  t.deepEqual(found, []);
});

test('the Node majors CI runs are the ones docs/clients.md names, within engines, and this Node satisfies engines', (t) => {
  const floor = Number(/^>=(\d+)$/.exec(pkg.engines.node)?.[1]);
  t.true(floor >= 20, `engines.node ${pkg.engines.node}`);
  const ciMajors = /MATRIX_NODES:-([\d ]+)\}/.exec(ci)?.[1]?.trim().split(/\s+/).map(Number) ?? [];
  t.true(ciMajors.length >= 2, 'the CI matrix names Node majors');
  for (const major of ciMajors) {
    t.true(major >= floor);
    t.regex(doc, new RegExp(`Node\\.js ${major}\\b`), `docs/clients.md names Node.js ${major}`);
  }
  t.regex(doc, new RegExp(`\`engines\`: \`${pkg.engines.node.replace(/[>=]/g, '\\$&')}\``));
  t.true(Number(process.versions.node.split('.')[0]) >= floor, `running on ${process.version}`);
});

test('the Sequelize peer range starts at the release docs/clients.md says CI checks', (t) => {
  const oldest = /^\^(6\.\d+\.\d+)$/.exec(pkg.peerDependencies['sequelize'] ?? '')?.[1];
  t.truthy(oldest, `peer range ${pkg.peerDependencies['sequelize']}`);
  t.regex(doc, new RegExp(`Sequelize ${oldest!.replace(/\./g, '\\.')}\\b`));
});
