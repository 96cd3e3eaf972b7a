/**
 * The built package: importable by name with require and import (the
 * exports map), with types, and every export of SPEC section 0 present;
 * a fresh checkout builds itself when packed (`prepack`), and the lockfile
 * matches package.json. Needs `npm run build` first (`npm test` does it).
 * test/package/consumer.test.ts installs the packed tarball in fresh projects.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { command } from '../helpers/consumer';

const root = join(__dirname, '..', '..');
const EXPECTED = ['installCacheops', 'Cacheops', 'invalidateObj', 'invalidateDict', 'invalidateModel', 'invalidateAll',
  'noInvalidation', 'invalidateFragment', 'CacheopsExtension', 'FileCache', 'CacheopsError', 'CacheopsConfigError', 'CacheMiss',
  'createAsyncLocalNamespace'];

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
}

test('dist/ is built (run npm run build)', (t) => {
  t.true(existsSync(join(root, 'dist', 'index.js')), 'dist/index.js exists');
  t.true(existsSync(join(root, 'dist', 'index.mjs')), 'dist/index.mjs exists');
  t.true(existsSync(join(root, 'dist', 'core', 'lua', 'fetch.lua')), 'the Lua scripts are shipped');
});

test('require("sequelize-cacheops") gives every public export', (t) => {
  const out = node(['-e', `const m = require('sequelize-cacheops'); console.log(JSON.stringify(Object.keys(m).filter((k) => m[k] !== undefined)))`]);
  const keys = JSON.parse(out) as string[];
  for (const name of EXPECTED) t.true(keys.includes(name), `require exports ${name}`);
});

test('import from "sequelize-cacheops" gives every public export, the same objects as require', (t) => {
  const out = node(['--input-type=module', '-e', `import * as m from 'sequelize-cacheops'; import { createRequire } from 'node:module'; const r = createRequire(import.meta.url)('sequelize-cacheops'); console.log(JSON.stringify(Object.keys(m).filter((k) => m[k] !== undefined && (k === 'default' || m[k] === r[k]))))`]);
  const keys = JSON.parse(out) as string[];
  for (const name of EXPECTED) t.true(keys.includes(name), `import exports ${name}`);
});

test('types: the exports map points at declarations that declare the public API', (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: { '.': { types: string } }; bin: Record<string, string> };
  const types = join(root, pkg.exports['.'].types);
  t.true(existsSync(types));
  const text = readFileSync(types, 'utf8');
  for (const name of EXPECTED) t.regex(text, new RegExp(`\\b${name}\\b`), `index.d.ts mentions ${name}`);
  t.true(existsSync(join(root, pkg.bin['cacheops']!)), 'the cacheops binary is built');
});

/** A copy of the repository's files as a fresh clone has them (no dist/), sharing node_modules. */
function freshCheckout(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-checkout-'));
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' })
    .split('\0').filter((f) => f !== '' && existsSync(join(root, f)));
  for (const file of files) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(join(root, file), join(dir, file));
  }
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}

test('a fresh checkout packs with code: `npm pack` runs `prepack`, which builds dist/; every source map names shipped files', async (t) => {
  t.timeout(300_000);
  const dir = freshCheckout();
  try {
    t.false(existsSync(join(dir, 'dist')), 'no dist/ before');
    const out = await command('npm', ['pack', '--dry-run', '--json'], dir);
    t.is(out.code, 0, out.stderr);
    const [info] = JSON.parse(out.stdout.slice(out.stdout.indexOf('['))) as { files: { path: string }[] }[];
    const paths = info!.files.map((f) => f.path);
    for (const file of ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/core/lua/fetch.lua', 'src/index.ts', 'README.md', 'LICENSE', 'package.json']) {
      t.true(paths.includes(file), `the package has ${file}`);
    }
    t.false(paths.some((p) => p.startsWith('test/') || p.startsWith('scripts/')), 'no tests or repository scripts shipped');
    const maps = paths.filter((p) => p.endsWith('.map'));
    t.true(maps.length > 0);
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(dir, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const shipped = posix.normalize(posix.join(posix.dirname(map), source));
        t.true(paths.includes(shipped), `${map} names ${shipped}, which the package ships`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the package has no install-time lifecycle script (an install of the tarball runs nothing, warns of nothing)', (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  for (const name of ['preinstall', 'install', 'postinstall', 'prepare']) t.is(pkg.scripts[name], undefined, `no ${name} script`);
});

test('package-lock.json is in sync with package.json (npm install changes nothing)', async (t) => {
  t.timeout(300_000);
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-lock-'));
  try {
    for (const file of ['package.json', 'package-lock.json']) copyFileSync(join(root, file), join(dir, file));
    const out = await command('npm', ['install', '--package-lock-only', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], dir);
    t.is(out.code, 0, out.stderr);
    t.deepEqual(JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')), JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
