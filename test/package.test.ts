/**
 * The built package: importable by name with require and import (the
 * exports map), with types, and every export of SPEC section 0 present.
 * Needs `npm run build` first (`npm test` does it).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..');
const EXPECTED = ['installCacheops', 'Cacheops', 'invalidateObj', 'invalidateDict', 'invalidateModel', 'invalidateAll',
  'noInvalidation', 'invalidateFragment', 'CacheopsExtension', 'FileCache', 'CacheopsError', 'CacheopsConfigError', 'CacheMiss',
  'createAsyncLocalNamespace'];

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
}

test('dist/ is built (run npm run build)', (t) => {
  t.true(existsSync(join(root, 'dist', 'index.js')), 'dist/index.js exists');
  t.true(existsSync(join(root, 'dist', 'index.mjs')), 'dist/index.mjs exists');
  t.true(existsSync(join(root, 'dist', 'lua', 'fetch.lua')), 'the Lua scripts are shipped');
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
