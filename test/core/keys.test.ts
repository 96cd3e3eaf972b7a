/**
 * keys.ts: escaping of key parts (injective, no separators, no hash tags or
 * globs) and the key layout helpers.
 */
import test from 'ava';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  allKeysPattern, conjKey, conjPrefix, epochsKey, escapeKeyPart, fenceKey, fullProbeKey, genKey, hashText, indexKey, indexKeyOfConj, indexPrefix,
  lockKey, namespace, parseKey, schemesKey, shardOf, simpleKey, UNSAFE_KEY_CHARACTERS, valueKey,
} from '../../src/core/keys';

/** Every character a key part must never contain once escaped. */
const FORBIDDEN = /[&=:,{}*?[\]\\\s]/;

/** Inverse of escapeKeyPart: '%XX' (two hex digits) and '%uXXXX' (four). */
function unescape(text: string): string {
  return text.replace(/%(?:u([0-9A-F]{4})|([0-9A-F]{2}))/g, (_m, four: string | undefined, two: string | undefined) =>
    String.fromCharCode(Number.parseInt((four ?? two)!, 16)));
}

/** Strings rich in the characters that matter (separators, '%', hex digits, Unicode spaces). */
const tricky = fc.string({
  unit: fc.oneof(
    fc.constantFrom('&', '=', ':', ',', '{', '}', '*', '?', '[', ']', '\\', ' ', '\t', '\n', '%', '0', '2', 'A', 'u', 'é', '\u00a0', '\u2000', '\u3000', '\ufeff'),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  ),
  maxLength: 12,
});

test.serial('escapeKeyPart leaves plain names alone', (t) => {
  t.is(escapeKeyPart('Posts'), 'Posts');
  t.is(escapeKeyPart('categoryId'), 'categoryId');
  t.is(escapeKeyPart('n-12.5'), 'n-12.5');
  t.is(escapeKeyPart(''), '');
});

test.serial('escapeKeyPart removes every separator, hash tag and glob character', (t) => {
  const out = escapeKeyPart('a&b=c:d,e{f}g*h?i[j]k\\l m\tn');
  t.false(FORBIDDEN.test(out), out);
  t.is(unescape(out), 'a&b=c:d,e{f}g*h?i[j]k\\l m\tn');
});

test.serial('escapeKeyPart keeps distinct inputs distinct (known pairs)', (t) => {
  const pairs: [string, string][] = [
    ['a&b', 'a%26b'],
    ['%', '%25'],
    [' 00', '\u2000'], // a two-digit escape followed by digits vs a four-digit code point
    ['\u00a000', '\ua000'],
    ['x=1', 'x%3D1'],
    ['', ' '],
  ];
  for (const [a, b] of pairs) t.not(escapeKeyPart(a), escapeKeyPart(b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
});

test.serial('property: escapeKeyPart never outputs a separator, brace or glob', (t) => {
  fc.assert(fc.property(fc.oneof(tricky, fc.string({ unit: 'binary' })), (s) => !FORBIDDEN.test(escapeKeyPart(s))));
  t.pass();
});

test.serial('property: escapeKeyPart is injective (it has an inverse)', (t) => {
  fc.assert(fc.property(fc.oneof(tricky, fc.string({ unit: 'binary' })), (s) => unescape(escapeKeyPart(s)) === s));
  fc.assert(fc.property(tricky, tricky, (a, b) => a === b || escapeKeyPart(a) !== escapeKeyPart(b)));
  t.pass();
});

test.serial('property: escapeKeyPart gives what a replace of each unsafe character gives (the keys stored by earlier versions)', (t) => {
  const unsafe = new RegExp(UNSAFE_KEY_CHARACTERS.source, 'g');
  const reference = (text: string): string => text.replace(unsafe, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `%u${code.toString(16).toUpperCase().padStart(4, '0')}` : `%${code.toString(16).toUpperCase().padStart(2, '0')}`;
  });
  t.is(UNSAFE_KEY_CHARACTERS.source, '[%&=:,{}*?[\\]\\\\\\s]');
  fc.assert(fc.property(fc.oneof(tricky, fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' })), (s) => escapeKeyPart(s) === reference(s)), { numRuns: 2000 });
  for (let code = 0; code <= 0xffff; code += 1) {
    const c = String.fromCharCode(code);
    if (escapeKeyPart(c) !== reference(c)) t.fail(`code unit ${code.toString(16)}`);
  }
  t.pass();
});

test.serial('property: escaped parts joined by separators split back unambiguously', (t) => {
  fc.assert(fc.property(fc.array(fc.tuple(tricky, tricky), { maxLength: 5 }), (pairs) => {
    const joined = pairs.map(([f, v]) => `${escapeKeyPart(f)}=${escapeKeyPart(v)}`).join('&');
    const back = joined === '' ? [] : joined.split('&').map((p) => p.split('=').map(unescape));
    return JSON.stringify(back) === JSON.stringify(pairs);
  }));
  t.pass();
});

test.serial('namespace carries the prefix and a hash tag; allKeysPattern matches only it', (t) => {
  t.is(namespace('app:', 0), 'app:cacheops:{0}:');
  t.is(namespace('', 3), 'cacheops:{3}:');
  t.is(allKeysPattern('app:'), 'app:cacheops:{*');
  // Glob characters of a prefix are matched literally.
  t.is(allKeysPattern('a*b?[c]:'), 'a\\*b\\?\\[c\\]:cacheops:{*');
});

test.serial('shardOf is stable, in range, and 0 on a single shard', (t) => {
  fc.assert(fc.property(fc.string(), fc.integer({ min: 1, max: 64 }), (s, n) => {
    const h = hashText(s);
    const shard = shardOf(h, n);
    return shard >= 0 && shard < n && shard === shardOf(h, n) && shardOf(h, 1) === 0;
  }));
  t.regex(hashText('x'), /^[0-9a-f]{40}$/);
  t.not(hashText('a'), hashText('b'));
});

test.serial('the key layout: every name keys.ts builds, pinned (a change to it needs a version part in the namespace)', (t) => {
  const ns = namespace('app:', 3);
  t.is(ns, 'app:cacheops:{3}:');
  t.deepEqual(
    [valueKey(ns, 'ab'), lockKey(ns, 'ab'), epochsKey(ns), fenceKey(ns), simpleKey(ns, 'k'), schemesKey(ns, 'T'), genKey(ns, 'T'),
      conjKey(ns, 'T', 'a=1&b=2'), indexKey(ns, 'T', 'a,b'), conjPrefix(ns, 'T'), indexPrefix(ns, 'T'), fullProbeKey(ns)],
    ['app:cacheops:{3}:q:ab', 'app:cacheops:{3}:lock:ab', 'app:cacheops:{3}:epochs', 'app:cacheops:{3}:fence', 'app:cacheops:{3}:simple:k',
      'app:cacheops:{3}:schemes:T', 'app:cacheops:{3}:gen:T', 'app:cacheops:{3}:conj:T:a=1&b=2', 'app:cacheops:{3}:idx:T:a,b',
      'app:cacheops:{3}:conj:T:', 'app:cacheops:{3}:idx:T:', 'app:cacheops:{3}:probe:full'],
  );
  t.deepEqual(parseKey(conjKey(ns, 'T', 'a=1&b=2')), { ns, kind: 'conj', rest: 'T:a=1&b=2' });
  t.is(indexKeyOfConj(conjKey(ns, 'T', 'a=1&b=2')), indexKey(ns, 'T', 'a,b'));
  t.is(allKeysPattern('app:'), 'app:cacheops:{*');
});

test.serial('no Lua script spells a key name: they are given the names, or the prefixes to derive them from', (t) => {
  const dir = join(__dirname, '..', '..', 'src', 'core', 'lua');
  const files = [...readdirSync(dir).filter((f) => f.endsWith('.lua')), ...readdirSync(join(dir, 'includes')).map((f) => `includes/${f}`)];
  t.true(files.length >= 13, `${files.length} scripts`);
  for (const file of files) {
    // The code only: comments name the keys they describe.
    const code = readFileSync(join(dir, file), 'utf8').replace(/--\[\[[\s\S]*?\]\]/g, '').replace(/--.*$/gm, '');
    const spelled = /['"](?:q|lock|epochs|fence|simple|schemes|gen|conj|idx):/.exec(code) ?? /\.\.\s*['"](?:epochs|fence)['"]/.exec(code);
    t.is(spelled, null, `${file} spells ${spelled?.[0] ?? ''}`);
    const head = /^(?:#!.*\n)?--\[\[([\s\S]*?)\]\]/.exec(readFileSync(join(dir, file), 'utf8'))?.[1] ?? '';
    if (!file.startsWith('includes/')) t.regex(head, /KEYS/, `${file} is headed with its KEYS`);
  }
});
