/**
 * LruMap (src/core/lru.ts), the bound of every process-memory structure: against
 * a plain model of least-recently-used order, and its expiries.
 */
import test from 'ava';
import fc from 'fast-check';
import { LruMap } from '../../src/core/lru';

type Op = { kind: 'set'; key: number; size: number } | { kind: 'get'; key: number } | { kind: 'delete'; key: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 30 }), size: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 30 }) }),
);

test('holds what a model of least-recently-used order holds, within its entry and byte bounds', (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 200 }), fc.array(op, { maxLength: 300 }), (maxEntries, maxBytes, ops) => {
    const lru = new LruMap<number, string>({ maxEntries, maxBytes });
    // The model: [key, size] pairs, least recently used first.
    let model: [number, number][] = [];
    for (const o of ops) {
      if (o.kind === 'set') {
        model = model.filter(([k]) => k !== o.key);
        lru.set(o.key, `v${o.key}`, { size: o.size });
        if (o.size <= maxBytes) model.push([o.key, o.size]);
        const bytes = (): number => model.reduce((n, [, s]) => n + s, 0);
        while (model.length > maxEntries || bytes() > maxBytes) model.shift();
      } else if (o.kind === 'get') {
        const i = model.findIndex(([k]) => k === o.key);
        const got = lru.get(o.key);
        if (i < 0) {
          if (got !== undefined) return false;
        } else {
          if (got !== `v${o.key}`) return false;
          model.push(...model.splice(i, 1));
        }
      } else {
        const i = model.findIndex(([k]) => k === o.key);
        if (lru.delete(o.key) !== i >= 0) return false;
        if (i >= 0) model.splice(i, 1);
      }
      if (lru.size !== model.length || lru.size > maxEntries || lru.bytes > maxBytes) return false;
      if (lru.bytes !== model.reduce((n, [, s]) => n + s, 0)) return false;
      if (JSON.stringify([...lru.keys()]) !== JSON.stringify(model.map(([k]) => k))) return false;
    }
    return true;
  }), { numRuns: 300 });
  t.pass();
});

test('an expired entry is not returned, and expired entries go on the next insert', async (t) => {
  const lru = new LruMap<string, number>({ maxEntries: 100 });
  const now = Date.now();
  lru.set('long', 1, { expires: now + 60_000 });
  for (let i = 0; i < 50; i += 1) lru.set(`short${i}`, i, { expires: now + 50 });
  t.is(lru.get('short1'), 1);
  t.is(lru.get('short1', now + 51), undefined, 'past its expiry');
  await new Promise((r) => setTimeout(r, 1100));
  // 'long' is the least recently used and not expired: the sweep still reaches the expired ones behind it.
  lru.set('new', 2);
  t.deepEqual([...lru.keys()], ['long', 'new']);
  t.is(lru.evictions, 0, 'expired entries are not counted as evictions');
});

type Op2 = Op | { kind: 'resize'; key: number; size: number } | { kind: 'peek'; key: number };

const op2: fc.Arbitrary<Op2> = fc.oneof(
  op,
  fc.record({ kind: fc.constant('resize' as const), key: fc.integer({ min: 0, max: 30 }), size: fc.integer({ min: 0, max: 60 }) }),
  fc.record({ kind: fc.constant('peek' as const), key: fc.integer({ min: 0, max: 30 }) }),
);

test('resize, peek and the removal callback follow a model of least-recently-used order', (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 200 }), fc.array(op2, { maxLength: 300 }), (maxEntries, maxBytes, ops) => {
    const heard: string[] = [];
    const lru = new LruMap<number, string>({ maxEntries, maxBytes }, (key, value, reason) => {
      heard.push(`${reason}:${key}:${value}`);
    });
    // The model: [key, size, value] triples, least recently used first; `expected` what the callback should hear.
    let model: [number, number, string][] = [];
    let expected: string[] = [];
    let evictions = 0;
    let version = 0;
    const bytes = (): number => model.reduce((n, [, s]) => n + s, 0);
    const evict = (): void => {
      while (model.length > maxEntries || bytes() > maxBytes) {
        const [k, , v] = model.shift()!;
        expected.push(`evicted:${k}:${v}`);
        evictions += 1;
      }
    };
    for (const o of ops) {
      const i = model.findIndex(([k]) => k === o.key);
      if (o.kind === 'set') {
        const value = `v${o.key}.${(version += 1)}`;
        if (i >= 0) expected.push(`replaced:${o.key}:${model.splice(i, 1)[0]![2]}`);
        lru.set(o.key, value, { size: o.size });
        if (o.size <= maxBytes) model.push([o.key, o.size, value]);
        evict();
      } else if (o.kind === 'get') {
        const got = lru.get(o.key);
        if (got !== (i < 0 ? undefined : model[i]![2])) return false;
        if (i >= 0) model.push(...model.splice(i, 1));
      } else if (o.kind === 'peek') {
        if (lru.peek(o.key) !== (i < 0 ? undefined : model[i]![2])) return false;
      } else if (o.kind === 'resize') {
        const fits = i >= 0 && o.size <= maxBytes;
        if (lru.resize(o.key, o.size) !== fits) return false;
        if (fits) {
          model[i]![1] = o.size;
          evict();
        }
      } else {
        if (lru.delete(o.key) !== i >= 0) return false;
        if (i >= 0) expected.push(`deleted:${o.key}:${model.splice(i, 1)[0]![2]}`);
      }
      if (lru.size !== model.length || lru.size > maxEntries || lru.bytes > maxBytes) return false;
      if (lru.bytes !== bytes() || lru.evictions !== evictions) return false;
      if (JSON.stringify([...lru.keys()]) !== JSON.stringify(model.map(([k]) => k))) return false;
      if (JSON.stringify(heard) !== JSON.stringify(expected)) return false;
    }
    lru.clear();
    return heard.length === expected.length && lru.size === 0 && lru.bytes === 0;
  }), { numRuns: 300 });
  t.pass();
});

test('the removal callback hears of expired entries, whether met by a read or by the sweep on insert', async (t) => {
  const heard: string[] = [];
  const lru = new LruMap<string, number>({ maxEntries: 100 }, (key, _value, reason) => heard.push(`${reason}:${key}`));
  const now = Date.now();
  lru.set('a', 1, { expires: now + 40 });
  lru.set('b', 2, { expires: now + 40 });
  lru.set('keep', 3);
  t.is(lru.get('a', now + 41), undefined);
  t.deepEqual(heard, ['expired:a']);
  t.is(lru.peek('b', now + 41), undefined, 'peek does not return an expired entry');
  t.deepEqual(heard, ['expired:a'], 'peek removes nothing');
  await new Promise((r) => setTimeout(r, 60));
  lru.set('c', 4);
  t.deepEqual(heard, ['expired:a', 'expired:b']);
  t.deepEqual([...lru.keys()], ['keep', 'c']);
});

test('resize keeps recency and may push out older entries, or the resized one when it is the oldest', (t) => {
  const heard: string[] = [];
  const lru = new LruMap<string, number>({ maxEntries: 10, maxBytes: 100 }, (key, _value, reason) => heard.push(`${reason}:${key}`));
  lru.set('a', 1, { size: 30 });
  lru.set('b', 2, { size: 30 });
  lru.set('c', 3, { size: 30 });
  t.true(lru.resize('b', 50));
  t.deepEqual(heard, ['evicted:a']);
  t.deepEqual([...lru.keys()], ['b', 'c'], 'b keeps its place');
  t.false(lru.resize('b', 101), 'past the byte bound alone');
  t.is(lru.bytes, 80);
  t.true(lru.resize('b', 80));
  t.deepEqual(heard, ['evicted:a', 'evicted:b']);
  t.deepEqual([...lru.keys()], ['c']);
  t.false(lru.resize('missing', 1));
});
