/**
 * createAsyncLocalNamespace(): the cls-hooked semantics Sequelize relies on
 * (nested contexts inherit and never leak, concurrent ones stay apart across
 * awaits, set outside a context throws), checked against cls-hooked itself on
 * random programs, and managed transactions through it on every dialect
 * (test/core/transactions.test.ts runs its CLS cases on it too).
 */
import test from 'ava';
import fc from 'fast-check';
import { createNamespace } from 'cls-hooked';
import { Sequelize } from 'sequelize';
import { createAsyncLocalNamespace, CacheopsError } from '../../src/index';
import { makeBlog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';

const ns = createAsyncLocalNamespace();
Sequelize.useCLS(ns);

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('get/set/run/runAndReturn/bind: inheritance, isolation, no context outside', async (t) => {
  t.is(ns.get('a'), undefined);
  t.is(ns.active, null);
  t.throws(() => ns.set('a', 1), { instanceOf: CacheopsError, message: /no CLS context/ });
  const seen: unknown[] = [];
  await new Promise<void>((resolve) => {
    ns.run((outer) => {
      ns.set('a', 1);
      t.is(outer['a'], 1);
      ns.run(() => {
        seen.push(ns.get('a')); // inherited
        ns.set('a', 2);
        seen.push(ns.get('a'));
      });
      seen.push(ns.get('a')); // the inner set did not leak out
      void tick().then(() => {
        seen.push(ns.get('a')); // carried across an await
        resolve();
      });
    });
  });
  t.deepEqual(seen, [1, 2, 1, 1]);
  t.is(ns.runAndReturn(() => { ns.set('b', 'x'); return ns.get('b'); }), 'x');
  t.is(ns.get('b'), undefined);

  const bound = ns.runAndReturn(() => {
    ns.set('c', 'bound');
    return ns.bind(() => ns.get('c'));
  });
  t.is(ns.get('c'), undefined);
  t.is(bound(), 'bound', 'a bound function runs in the context it was bound in');
  const explicit = ns.bind(() => ns.get('d'), { d: 4 });
  t.is(explicit(), 4);

  // Concurrent contexts, interleaved over awaits.
  const results = await Promise.all([1, 2, 3].map((n) => ns.runAndReturn(async () => {
    ns.set('n', n);
    for (let i = 0; i < 5; i += 1) {
      await tick();
      if (ns.get('n') !== n) return `lost ${n}`;
    }
    return n;
  })));
  t.deepEqual(results, [1, 2, 3]);
  t.notThrows(() => Sequelize.useCLS(ns), 'Sequelize accepts it as a namespace');
});

type Op =
  | { readonly kind: 'set'; readonly key: 'x' | 'y'; readonly value: number }
  | { readonly kind: 'get'; readonly key: 'x' | 'y' }
  | { readonly kind: 'await' }
  | { readonly kind: 'run'; readonly body: readonly Op[] }
  | { readonly kind: 'parallel'; readonly branches: readonly (readonly Op[])[] };

interface NamespaceLike {
  get(key: string): unknown;
  set(key: string, value: unknown): unknown;
  run(fn: (context: unknown) => void): unknown;
}

/** Runs a program on a namespace; what each `get` saw, and which `set`s threw (no context). */
async function execute(n: NamespaceLike, ops: readonly Op[], log: unknown[]): Promise<void> {
  for (const op of ops) {
    if (op.kind === 'set') {
      try {
        n.set(op.key, op.value);
        log.push(`set ${op.key}`);
      } catch {
        log.push(`set ${op.key}: no context`);
      }
    } else if (op.kind === 'get') {
      log.push(n.get(op.key) ?? null);
    } else if (op.kind === 'await') {
      await tick();
    } else if (op.kind === 'run') {
      const inner: unknown[] = [];
      await new Promise<void>((resolve, reject) => { n.run(() => { execute(n, op.body, inner).then(resolve, reject); }); });
      log.push(inner);
    } else {
      const logs = op.branches.map(() => [] as unknown[]);
      await Promise.all(op.branches.map((b, i) => execute(n, b, logs[i]!)));
      log.push(logs);
    }
  }
}

const key = fc.constantFrom<'x' | 'y'>('x', 'y');
const program = fc.letrec<{ ops: Op[]; op: Op }>((tie) => ({
  ops: fc.array(tie('op'), { maxLength: 6 }),
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ kind: fc.constant('set' as const), key, value: fc.integer({ min: 0, max: 9 }) }),
    fc.record({ kind: fc.constant('get' as const), key }),
    fc.record({ kind: fc.constant('await' as const) }),
    fc.record({ kind: fc.constant('run' as const), body: tie('ops') as fc.Arbitrary<Op[]> }),
    fc.record({ kind: fc.constant('parallel' as const), branches: fc.array(tie('ops') as fc.Arbitrary<Op[]>, { minLength: 2, maxLength: 3 }) }),
  ),
})).ops;

test('differential: random programs of run/set/get/await/parallel see what cls-hooked sees', async (t) => {
  const hooked = createNamespace('cacheops-differential');
  let runs = 0;
  await fc.assert(fc.asyncProperty(program, async (ops) => {
    runs += 1;
    const ours: unknown[] = [];
    const theirs: unknown[] = [];
    await execute(ns, ops, ours);
    await execute(hooked as unknown as NamespaceLike, ops, theirs);
    t.deepEqual(ours, theirs);
    return JSON.stringify(ours) === JSON.stringify(theirs);
  }), { numRuns: 300 });
  t.is(runs >= 300, true);
});

for (const dialect of dialects()) {
  test.serial(`${dialect}: managed transactions through the namespace — nested, concurrent, invalidated after commit`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'alsns');
    try {
      const { Post, sequelize } = blog;
      await Post.create({ title: 'a', views: 1 });
      const read = () => Post.findAll({ where: { views: 1 } });
      await read();
      let outerTx: unknown;
      await sequelize.transaction(async (outer) => {
        outerTx = outer;
        t.is(ns.get('transaction'), outer);
        t.is((await countSql(sequelize, read)).sql.length, 0, 'before writing, a hit');
        await sequelize.transaction({ transaction: outer }, async (savepoint) => {
          t.is(ns.get('transaction'), savepoint, 'the savepoint is the current transaction inside');
          await Post.create({ title: 'b', views: 1 });
        });
        t.is(ns.get('transaction'), outer, 'back to the outer one after the savepoint');
        const inside = await countSql(sequelize, read);
        t.is(inside.sql.length, 1, 'after a write in the transaction, reads bypass');
        t.is(inside.result.length, 2);
      });
      t.truthy(outerTx);
      t.is(ns.get('transaction'), undefined, 'nothing outside');
      t.is((await countSql(sequelize, read)).sql.length, 1, 'the commit invalidated');
      t.is((await countSql(sequelize, read)).sql.length, 0);

      if (dialect !== 'sqlite') {
        // Concurrent managed transactions each carry their own (SQLite has one connection).
        const seen = await Promise.all([0, 1, 2].map((i) => sequelize.transaction(async (tx) => {
          for (let k = 0; k < 3; k += 1) {
            await Post.count({ where: { views: 1 } });
            if (ns.get('transaction') !== tx) return false;
          }
          await Post.create({ title: `c${i}`, views: 2 });
          return ns.get('transaction') === tx;
        })));
        t.deepEqual(seen, [true, true, true]);
        t.is(await Post.count({ where: { views: 2 } }), 3);
      }
    } finally {
      await blog.close();
    }
  });
}
