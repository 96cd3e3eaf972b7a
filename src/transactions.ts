/**
 * Transactions: which have written (their later reads bypass the cache), and
 * the invalidations they queue. Queued invalidations run after the outermost
 * commit; a rollback drops them; a savepoint rolled back drops its own (and
 * those of savepoints inside it) while its siblings' survive, unless its name
 * is shared (see the rollback wrapper).
 *
 * The transaction of a call is its `transaction` option, or the CLS one when
 * `Sequelize.useCLS` is on.
 */
import type { Sequelize, Transaction } from 'sequelize';

type Task = () => Promise<void>;


interface RootState {
  written: boolean;
  readonly queued: { readonly owner: Transaction; readonly task: Task }[];
}

function parentOf(t: Transaction): Transaction | undefined {
  return (t as unknown as { parent?: Transaction }).parent;
}

interface Named { readonly name?: string; readonly savepoints?: readonly Named[] }

/** Whether another savepoint of the same outermost transaction has this savepoint's name. */
function nameShared(t: Transaction): boolean {
  let root = t;
  for (let p = parentOf(root); p; p = parentOf(root)) root = p;
  const name = (t as unknown as Named).name;
  const visit = (n: Named): boolean => (n !== (t as unknown as Named) && n.name === name) || (n.savepoints ?? []).some(visit);
  return (root as unknown as Named).savepoints?.some(visit) ?? false;
}

export class TransactionTracker {
  private readonly roots = new WeakMap<Transaction, RootState>();
  private readonly rolledBack = new WeakSet<Transaction>();

  constructor(private readonly sequelize: Sequelize, private readonly onError: (error: unknown) => void) {
    const qi = sequelize.getQueryInterface() as unknown as { rollbackTransaction: (t: Transaction, o: unknown) => Promise<unknown> };
    const original = qi.rollbackTransaction;
    const rolledBack = this.rolledBack;
    qi.rollbackTransaction = async function rollbackTransaction(this: unknown, transaction: Transaction, options: unknown) {
      const result = await original.call(this, transaction, options);
      // Sequelize names a savepoint `<root id>-sp-<index among its parent's savepoints>`, so a
      // savepoint nested in another can share its name; `ROLLBACK TO SAVEPOINT` then reaches only
      // the latest of them and the earlier one's writes stay. Such a rollback drops nothing
      // (invalidating more than needed is harmless; less is a stale read).
      if (!parentOf(transaction) || !nameShared(transaction)) rolledBack.add(transaction);
      return result;
    };
  }

  /** The transaction a call runs in, if any. */
  current(options: { transaction?: Transaction | null } | undefined): Transaction | undefined {
    if (options?.transaction) return options.transaction;
    if (options && options.transaction === null) return undefined;
    const cls = (this.sequelize.constructor as unknown as { _cls?: { get(key: string): unknown } })._cls;
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
      s = { written: false, queued: [] };
      this.roots.set(root, s);
      const state = s;
      root.afterCommit(async () => {
        const tasks = state.queued.splice(0).filter(({ owner }) => !this.droppedBy(owner)).map(({ task }) => task);
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

  private droppedBy(owner: Transaction): boolean {
    for (let t: Transaction | undefined = owner; t; t = parentOf(t)) if (this.rolledBack.has(t)) return true;
    return false;
  }

  hasWritten(t: Transaction): boolean {
    return this.roots.get(this.root(t))?.written ?? false;
  }

  markWritten(t: Transaction): void {
    this.state(t).written = true;
  }

  /** Runs `task` after the outermost commit (dropped on rollback of `t` or an enclosing savepoint). */
  defer(t: Transaction, task: Task): void {
    this.state(t).queued.push({ owner: t, task });
  }
}
