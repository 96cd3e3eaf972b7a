/**
 * Transactions: which have written (their later reads bypass the cache), and
 * the invalidations they queue. Queued invalidations run after the outermost
 * commit; a rollback of the outermost transaction drops them all.
 *
 * A rolled back savepoint drops what the database rolled back, read from the
 * statements themselves (savepoint-stack.ts): Sequelize 6 reuses savepoint
 * names within one transaction (`<id>-sp-<n>` counts per parent) and renames
 * a parent when it opens a child, so `ROLLBACK TO SAVEPOINT` often reaches
 * another savepoint than the Transaction object it was called on. Following
 * the SQL keeps the queue equal to what the database kept; anything the
 * tracker cannot follow exactly drops nothing (an extra invalidation costs a
 * miss, a missing one a stale read).
 *
 * The transaction of a call is its `transaction` option, or the CLS one when
 * `Sequelize.useCLS` is on.
 */
import type { Sequelize, Transaction } from 'sequelize';
import { parseSavepointStatement, SavepointStack } from './savepoint-stack';
import { clsOf, parentOf, queryHolder } from './sequelize-internals';

type Task = () => Promise<void>;

interface RootState {
  written: boolean;
  readonly queued: { readonly at: number; readonly task: Task }[];
  readonly savepoints: SavepointStack;
}

export class TransactionTracker {
  private readonly roots = new WeakMap<Transaction, RootState>();
  /** Orders defers, savepoints and rollbacks of every transaction of this installation. */
  private clock = 0;

  constructor(private readonly sequelize: Sequelize, private readonly onError: (error: unknown) => void) {
    // A rolled back outermost transaction never commits, so its queue never runs.
    this.watchSavepoints();
  }

  /**
   * Follows SAVEPOINT, ROLLBACK TO SAVEPOINT and RELEASE SAVEPOINT as they are
   * sent on a transaction's connection, whoever sends them (Sequelize or raw SQL).
   */
  private watchSavepoints(): void {
    const s = queryHolder(this.sequelize);
    const original = s.query;
    const tracker = this;
    const dialect = this.sequelize.getDialect();
    s.query = async function query(this: unknown, sql: unknown, options?: { transaction?: Transaction | null }) {
      const text = typeof sql === 'string' ? sql : (sql as { query?: unknown } | undefined)?.query;
      const statement = typeof text === 'string' ? parseSavepointStatement(text, dialect) : undefined;
      if (!statement) return original.call(this, sql, options);
      const t = tracker.current(options);
      if (!t) return original.call(this, sql, options);
      const stack = tracker.state(t).savepoints;
      const pending = stack.sending(statement, dialect, () => ++tracker.clock);
      const result = await original.call(this, sql, options);
      const dropFrom = pending.succeeded(() => ++tracker.clock);
      if (dropFrom) tracker.drop(t, dropFrom.after, dropFrom.before);
      return result;
    };
  }

  /** The transaction a call runs in, if any. */
  current(options: { transaction?: Transaction | null } | undefined): Transaction | undefined {
    if (options?.transaction) return options.transaction;
    if (options && options.transaction === null) return undefined;
    const cls = clsOf(this.sequelize);
    const t = cls?.get('transaction');
    return t ? (t as Transaction) : undefined;
  }

  root(t: Transaction): Transaction {
    let cur = t;
    for (let p = parentOf(cur); p; p = parentOf(cur)) cur = p;
    return cur;
  }

  private state(t: Transaction): RootState {
    const root = this.root(t);
    let s = this.roots.get(root);
    if (!s) {
      s = { written: false, queued: [], savepoints: new SavepointStack() };
      this.roots.set(root, s);
      const state = s;
      root.afterCommit(async () => {
        const tasks = state.queued.splice(0).map(({ task }) => task);
        for (const task of tasks) {
          try {
            await task();
          } catch (error) {
            this.onError(error);
          }
        }
      });
    }
    return s;
  }

  /** Drops the invalidations queued in (after, before): the writes a ROLLBACK TO undid. */
  private drop(t: Transaction, after: number, before: number): void {
    const queued = this.state(t).queued;
    const kept = queued.filter(({ at }) => at <= after || at >= before);
    queued.splice(0, queued.length, ...kept);
  }

  hasWritten(t: Transaction): boolean {
    return this.roots.get(this.root(t))?.written ?? false;
  }

  /**
   * Marks a transaction as written from now on, for a write about to run; the
   * returned function ends the write (after its invalidation is queued). A
   * savepoint opened while a write runs on its connection is never taken as
   * the start of what a rollback undoes.
   */
  beginWrite(t: Transaction): () => void {
    const state = this.state(t);
    state.written = true;
    return state.savepoints.writeStarted();
  }

  /** Runs `task` after the outermost commit (dropped when the database rolls its write back). */
  defer(t: Transaction, task: Task): void {
    this.state(t).queued.push({ at: ++this.clock, task });
  }
}
