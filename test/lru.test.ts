/**
 * LruMap (src/core/lru.ts), the bound of every process-memory structure: against
 * a plain model of least-recently-used order, and its expiries.
 */
import test from 'ava';
import fc from 'fast-check';
import { LruMap } from '../src/core/lru';

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
