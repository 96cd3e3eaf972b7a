/**
 * Steps (a read, a write, or a transaction grouping some of them with
 * savepoints nested up to two levels) and the runner that executes a
 * sequence of them, checking after each that every probe, every recent generated read and the
 * step's own read give through the cache what they give around it.
 */
import fc from 'fast-check';
import type { Transaction } from 'sequelize';
import type { Dialect } from '../helpers/env';
import { PROBES } from './probes';
import { readArb, type Read } from './reads';
import type { World } from './schema';
import { writeArb } from './writes-assoc';
import { StaleReadError, type Write } from './writes';

type Leaf = { readonly k: 'read'; readonly read: Read } | { readonly k: 'write'; readonly write: Write };
/** A savepoint: steps, then optionally a savepoint inside it, then more steps. */
interface Savepoint {
  readonly managed: boolean;
  readonly steps: readonly Leaf[];
  readonly inner: Savepoint | undefined;
  readonly then: readonly Leaf[];
  readonly commit: boolean;
}
interface Tx { readonly k: 'tx'; readonly managed: boolean; readonly before: readonly Leaf[]; readonly savepoints: readonly Savepoint[]; readonly after: readonly Leaf[]; readonly commit: boolean }
export type Step = Leaf | Tx;

const leafText = (s: Leaf): string => (s.k === 'read' ? `read  ${s.read.label}` : `write ${s.write.label}`);

/** Readable text of a step (what fast-check prints for a counterexample). */
export function stepText(s: Step, indent = ''): string {
  if (s.k !== 'tx') return indent + leafText(s);
  const body = (steps: readonly Leaf[], ind: string) => steps.map((x) => `${ind}${leafText(x)}`);
  const lines = [`${indent}${s.managed ? 'await sequelize.transaction(async (t) => {' : 'const t = await sequelize.transaction(); {'}`, ...body(s.before, `${indent}  `)];
  const savepoint = (sp: Savepoint, parent: string, name: string, ind: string): void => {
    lines.push(`${ind}${sp.managed ? `await sequelize.transaction({ transaction: ${parent} }, async (${name}) => {` : `const ${name} = await sequelize.transaction({ transaction: ${parent} }); {`}`);
    lines.push(...body(sp.steps, `${ind}  `));
    if (sp.inner) savepoint(sp.inner, name, `${name}_2`, `${ind}  `);
    lines.push(...body(sp.then, `${ind}  `), `${ind}} -> ${sp.commit ? 'commit' : 'rollback'}`);
  };
  s.savepoints.forEach((sp, i) => savepoint(sp, 't', `sp${i + 1}`, `${indent}  `));
  lines.push(...body(s.after, `${indent}  `), `${indent}} -> ${s.commit ? 'commit' : 'rollback'}`);
  return lines.join('\n');
}

function withText<T extends Step>(s: T): T {
  return { ...s, [fc.toStringMethod]: () => `\n${stepText(s, '  ')}` };
}

/** Steps for a dialect (MySQL commits a transaction around TRUNCATE, so none inside one there). */
export function stepArb(dialect: Dialect): fc.Arbitrary<Step> {
  const read = readArb.map((r): Leaf => ({ k: 'read', read: r }));
  const write = writeArb.map((w): Leaf => ({ k: 'write', write: w }));
  const inTx = writeArb.filter((w) => !(dialect === 'mysql' && w.ddl)).map((w): Leaf => ({ k: 'write', write: w }));
  const txLeaf = fc.oneof({ weight: 2, arbitrary: read }, { weight: 3, arbitrary: inTx });
  const leaves = (max: number) => fc.array(txLeaf, { minLength: 0, maxLength: max });
  const innermost = fc.record({ managed: fc.boolean(), steps: leaves(2), inner: fc.constant(undefined), then: fc.constant([]), commit: fc.boolean() });
  const savepoint: fc.Arbitrary<Savepoint> = fc.record({
    managed: fc.boolean(), steps: leaves(3), inner: fc.option(innermost, { nil: undefined, freq: 3 }), then: leaves(1), commit: fc.boolean(),
  });
  const tx = fc.record({
    k: fc.constant('tx' as const),
    managed: fc.boolean(),
    before: leaves(4),
    savepoints: fc.array(savepoint, { maxLength: 2 }),
    after: leaves(2),
    commit: fc.boolean(),
  });
  return fc.oneof({ weight: 4, arbitrary: read }, { weight: 6, arbitrary: write }, { weight: 1, arbitrary: tx }).map(withText);
}

class Rollback extends Error {}

/** The two results, or for row lists only the rows that differ. */
function difference(cached: string, fresh: string): string {
  const a = JSON.parse(cached) as unknown;
  const b = JSON.parse(fresh) as unknown;
  const rows = (x: unknown) => (Array.isArray(x) ? x : typeof x === 'object' && x !== null && Array.isArray((x as { rows?: unknown }).rows) ? (x as { rows: unknown[] }).rows : undefined);
  const [ra, rb] = [rows(a), rows(b)];
  if (!ra || !rb) return `  cached: ${cached}\n  fresh:  ${fresh}`;
  const sa = ra.map((r) => JSON.stringify(r));
  const sb = rb.map((r) => JSON.stringify(r));
  const onlyA = sa.filter((r) => !sb.includes(r));
  const onlyB = sb.filter((r) => !sa.includes(r));
  const head = Array.isArray(a) ? `${ra.length} rows cached, ${rb.length} fresh` : `cached: ${JSON.stringify({ ...(a as object), rows: ra.length })}, fresh: ${JSON.stringify({ ...(b as object), rows: rb.length })}`;
  const order = onlyA.length === 0 && onlyB.length === 0 ? ' (same rows, different order)' : '';
  return [`  ${head}${order}`, ...onlyA.map((r) => `  only cached: ${r}`), ...onlyB.map((r) => `  only fresh:  ${r}`)].join('\n');
}

const POOL = 6;

/** Runs one sequence on one world. */
export class Runner {
  steps = 0;
  reads = 0;
  private readonly pool: Read[] = [];
  private current = '';

  constructor(private readonly w: World) {}

  /** Every probe, recent read and `own` must agree through and around the cache (in `t` if given). */
  private async check(own: Read | undefined, t: Transaction | undefined): Promise<void> {
    const reads = own ? [...PROBES, ...this.pool, own] : [...PROBES, ...this.pool];
    const peer = t ? undefined : this.w.peer;
    // The peer's near cache has applied every invalidation message Redis sent it for the writes so far.
    if (peer) await peer.cacheops.core.near?.tracker.barrier();
    for (const r of reads) {
      const cached = await r.run(this.w, { transaction: t, cached: true });
      const fresh = await r.run(this.w, { transaction: t, cached: false });
      this.reads += 2;
      if (cached !== fresh) {
        throw new StaleReadError(`stale read${t ? ' (inside the transaction)' : ''} after: ${this.current}\n  read:   ${r.label}\n${difference(cached, fresh)}`);
      }
      if (!peer) continue;
      const there = await r.run(peer, { transaction: undefined, cached: true });
      this.reads += 1;
      if (there !== fresh) {
        throw new StaleReadError(`stale read in the other installation after: ${this.current}\n  read:   ${r.label}\n${difference(there, fresh)}`);
      }
    }
  }

  private async leaf(s: Leaf, t: Transaction | undefined): Promise<void> {
    this.steps += 1;
    this.current = leafText(s);
    if (s.k === 'write') {
      await s.write.run(this.w, { transaction: t, extra: {} });
      await this.check(undefined, t);
    } else {
      await this.check(s.read, t);
      if (!t) {
        this.pool.push(s.read);
        if (this.pool.length > POOL) this.pool.shift();
      }
    }
  }

  private async block(steps: readonly Leaf[], t: Transaction): Promise<void> {
    for (const s of steps) await this.leaf(s, t);
  }

  /** Opens a transaction (or a savepoint in `parent`), runs `body`, commits or rolls back. */
  private async transaction(managed: boolean, parent: Transaction | undefined, commit: boolean, body: (t: Transaction) => Promise<void>): Promise<void> {
    const options = parent ? { transaction: parent } : {};
    if (managed) {
      try {
        await this.w.sequelize.transaction(options, async (t) => {
          await body(t);
          if (!commit) throw new Rollback('rollback');
        });
      } catch (error) {
        if (!(error instanceof Rollback)) throw error;
      }
      return;
    }
    const t = await this.w.sequelize.transaction(options);
    try {
      await body(t);
    } catch (error) {
      await t.rollback();
      throw error;
    }
    if (commit) await t.commit();
    else await t.rollback();
  }

  /** A savepoint in `parent`; afterwards the parent's reads are checked. */
  private async savepoint(sp: Savepoint, parent: Transaction): Promise<void> {
    this.steps += 1;
    await this.transaction(sp.managed, parent, sp.commit, async (t) => {
      await this.block(sp.steps, t);
      if (sp.inner) await this.savepoint(sp.inner, t);
      await this.block(sp.then, t);
    });
    this.current = `savepoint ${sp.commit ? 'commit' : 'rollback'}`;
    await this.check(undefined, parent);
  }

  async run(step: Step): Promise<void> {
    if (step.k !== 'tx') return this.leaf(step, undefined);
    this.steps += 1;
    await this.transaction(step.managed, undefined, step.commit, async (t) => {
      this.current = 'transaction start';
      await this.check(undefined, t);
      await this.block(step.before, t);
      for (const sp of step.savepoints) await this.savepoint(sp, t);
      await this.block(step.after, t);
    });
    this.current = `transaction ${step.commit ? 'commit' : 'rollback'}`;
    await this.check(undefined, undefined);
  }
}
