#!/usr/bin/env node
/**
 * The import graph of src/: files and lines per folder, the import circles
 * (strongly connected components over value imports), the layer depth, and the
 * casts into Sequelize internals. Type-only edges are counted apart because
 * they vanish at run time and cannot form a load-order circle.
 *
 *   node scripts/import-graph.mjs [--json]
 *
 * The test in test/architecture.test.ts imports analyze() from here.
 */
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every .ts file under dir, as paths relative to the repository root with '/'. */
function listTs(dir, root = ROOT) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listTs(path, root));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(relative(root, path).split(sep).join('/'));
  }
  return out.sort();
}

/** Resolves a relative specifier to a file in the set, or undefined when it leaves src/. */
function resolveSpecifier(from, specifier, files) {
  const base = join(dirname(from), specifier).split(sep).join('/');
  for (const candidate of [base, `${base}.ts`, `${base}/index.ts`, base.replace(/\.js$/, '.ts')]) {
    if (files.has(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Casts of values that are not Sequelize's: ioredis clients, Node http
 * responses and handlers, the nunjucks environment, the library's own option
 * objects. Every other `as unknown as` in src/ reaches into a Sequelize object.
 */
const NOT_SEQUELIZE = /\b(client|res|handler|nextArg|nj|limits) as unknown as|DEFAULT_MEMORY_LIMITS\[/;

/** Block and line comments blanked out (string contents are left alone: specifiers live there). */
function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`])\/\/[^\n]*/g, '$1');
}

/**
 * The edges of one file: { to, type } where type is true when only types cross
 * (`import type`, `export type`, `typeof import(...)`, or an import whose every
 * named binding is marked `type`).
 */
function edgesOf(file, text, files) {
  const edges = [];
  const add = (specifier, type) => {
    if (!specifier.startsWith('.')) return;
    const to = resolveSpecifier(file, specifier, files);
    if (to) edges.push({ to, type });
  };
  const code = stripComments(text);
  // Static import/export ... from '...'; the clause may span lines.
  const staticRe = /(^|[;\n])\s*(import|export)\s+([^;'"]*?)\s+from\s+['"]([^'"]+)['"]/g;
  for (const m of code.matchAll(staticRe)) {
    const clause = m[3].trim();
    let type = /^type\b/.test(clause);
    const braces = /^\{([\s\S]*)\}$/.exec(clause);
    if (!type && braces) {
      const names = braces[1].split(',').map((s) => s.trim()).filter(Boolean);
      type = names.length > 0 && names.every((n) => /^type\s/.test(n));
    }
    add(m[4], type);
  }
  // Side-effect imports: import './x';
  for (const m of code.matchAll(/(^|[;\n])\s*import\s+['"]([^'"]+)['"]/g)) add(m[2], false);
  // Dynamic import('./x') and require('./x'); `typeof import('./x')` is a type.
  for (const m of code.matchAll(/(typeof\s+)?\b(import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) add(m[3], Boolean(m[1]));
  return edges;
}

/** Tarjan's strongly connected components; returns those with a circle (size > 1 or a self edge). */
function circles(nodes, next) {
  let index = 0;
  const idx = new Map(), low = new Map(), onStack = new Set(), stack = [], out = [];
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++;
    stack.push(v); onStack.add(v);
    for (const w of next.get(v)) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do { w = stack.pop(); onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || next.get(v).has(v)) out.push(scc.sort());
    }
  };
  for (const v of nodes) if (!idx.has(v)) visit(v);
  return out;
}

/** The graph of src/ with its figures. */
export function analyze(root = ROOT) {
  const list = listTs(join(root, 'src'), root);
  const files = new Set(list);
  const value = new Map(), typeOnly = new Map();
  let valueEdges = 0, typeEdges = 0, casts = 0, sequelizeCasts = 0;
  const sequelizeCastFiles = new Set();
  const castsByFile = {};
  const folders = {};
  for (const file of list) {
    const text = readFileSync(join(root, file), 'utf8');
    const folder = file.split('/').slice(0, -1).join('/');
    folders[folder] ??= { files: 0, lines: 0 };
    folders[folder].files++;
    folders[folder].lines += text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    for (const line of stripComments(text).split('\n')) {
      const n = (line.match(/\bas unknown as\b/g) ?? []).length;
      if (!n) continue;
      casts += n;
      castsByFile[file] = (castsByFile[file] ?? 0) + n;
      if (!NOT_SEQUELIZE.test(line)) { sequelizeCasts += n; sequelizeCastFiles.add(file); }
    }
    value.set(file, new Set());
    typeOnly.set(file, new Set());
    for (const edge of edgesOf(file, text, files)) {
      if (edge.type) typeOnly.get(file).add(edge.to);
      else value.get(file).add(edge.to);
    }
  }
  // A pair imported both ways (a value and a type import) counts once, as a value edge.
  for (const [file, tos] of typeOnly) for (const to of value.get(file)) tos.delete(to);
  for (const s of value.values()) valueEdges += s.size;
  for (const s of typeOnly.values()) typeEdges += s.size;
  const sccs = circles(list, value);
  const all = new Map(list.map((f) => [f, new Set([...value.get(f), ...typeOnly.get(f)])]));
  const typeCircles = circles(list, all);
  // Layer depth: the longest value-import chain to a leaf, over the graph of components.
  const component = new Map();
  list.forEach((f) => component.set(f, f));
  for (const scc of sccs) for (const f of scc) component.set(f, scc[0]);
  const depth = new Map();
  const depthOf = (f) => {
    const c = component.get(f);
    if (depth.has(c)) return depth.get(c);
    depth.set(c, 0);
    let d = 0;
    const members = list.filter((g) => component.get(g) === c);
    for (const m of members) for (const to of value.get(m)) if (component.get(to) !== c) d = Math.max(d, depthOf(to) + 1);
    depth.set(c, d);
    return d;
  };
  const layers = {};
  for (const f of list) layers[f] = depthOf(f) + 1;
  const layerCount = Math.max(0, ...Object.values(layers));
  return {
    files: list.length,
    lines: Object.values(folders).reduce((a, f) => a + f.lines, 0),
    folders,
    valueEdges,
    typeEdges,
    circles: sccs,
    circlesWithTypes: typeCircles,
    layers: layerCount,
    layerOf: layers,
    casts,
    sequelizeCasts,
    sequelizeCastFiles: sequelizeCastFiles.size,
    sequelizeCastFileList: [...sequelizeCastFiles].sort(),
    castsByFile,
    imports: Object.fromEntries(list.map((f) => [f, [...value.get(f)].sort()])),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = analyze();
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(`${result.files} files, ${result.lines} lines in src/`);
    console.log('\nfolder                      files   lines');
    for (const [folder, f] of Object.entries(result.folders).sort()) {
      console.log(`${folder.padEnd(28)}${String(f.files).padStart(5)}${String(f.lines).padStart(8)}`);
    }
    console.log(`\nimport edges: ${result.valueEdges} value, ${result.typeEdges} type-only`);
    console.log(`layer depth: ${result.layers}`);
    console.log(`import circles (value imports): ${result.circles.length}`);
    for (const scc of result.circles) console.log(`  ${scc.join(' <-> ')}`);
    console.log(`import circles counting type-only imports too: ${result.circlesWithTypes.length}`);
    for (const scc of result.circlesWithTypes) console.log(`  ${scc.join(' <-> ')}`);
    console.log(`\n'as unknown as' casts: ${result.casts} in ${Object.keys(result.castsByFile).length} files, ${result.sequelizeCasts} of them into Sequelize objects (in ${result.sequelizeCastFiles} files)`);
    for (const [file, n] of Object.entries(result.castsByFile).sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(3)}  ${file}`);
    if (!existsSync(join(ROOT, 'src'))) process.exitCode = 1;
  }
}
