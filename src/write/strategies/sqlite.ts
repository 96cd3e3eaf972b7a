/**
 * SQLite: updates (but those that set a primary key column) and deletes of
 * a model with a key, and one-row inserts, return their rows' states
 * (images/sqlite.ts, with the triggers and column types of
 * images/sqlite-state.ts); the rest takes the pre-read. SQLite has no row
 * locks: writes outside a transaction are serialized by an in-process mutex
 * instead (and, on a file, by SQLite's write lock, see underWriteLock).
 */
import type { Model, ModelStatic, Transaction } from 'sequelize';
import { storageOptionsOf } from '../../core/sequelize-internals';
import type { StatementCapture } from '../images/statement';
import { insideManagedWrite, PreRead, retrying, type ImagePlan, type ImageRequest } from './strategy';

export class SqliteReturning extends PreRead {
  override async images<R>(model: ModelStatic<Model>, request: ImageRequest, userTx: Transaction | undefined, run: (plan: ImagePlan) => Promise<R>): Promise<{ result: R } | undefined> {
    const { kind } = request;
    if (!this.keyed || !(kind === 'delete' || (kind === 'update' && !request.setsKey))) return undefined;
    const { sqlite } = this.ctx;
    // Writes outside a transaction queue on the mutex, so none runs inside the
    // BEGIN IMMEDIATE ... COMMIT of a pre-read write of this process (see underWriteLock).
    const go = async (): Promise<{ result: R } | undefined> => {
      for (let attempt = 1; ; attempt += 1) {
        const images = await sqlite.prepare(model, kind, userTx);
        if (!images) return undefined;
        try {
          return { result: await run({ rewrite: images.rewrite, take: images.take }) };
        } catch (error) {
          // The temp table went with a rolled back transaction: the statement failed to
          // compile, nothing of it ran; made again, the write is run once more.
          if (attempt > 1 || !sqlite.lost(error)) throw error;
        }
      }
    };
    return userTx ? go() : this.ctx.mutex.run(go);
  }

  override insertImages(model: ModelStatic<Model>, tx: Transaction | undefined): Promise<Pick<StatementCapture, 'rewrite' | 'take'> | undefined> {
    return this.ctx.sqlite.prepare(model, 'insert', tx);
  }

  /**
   * In-process writers queue on the mutex; on a database file, other processes are
   * kept out by SQLite's write lock, taken before the pre-read (see underWriteLock).
   */
  override preRead<T>(exec: (tx: Transaction | undefined) => Promise<T>, locks: boolean): Promise<T> {
    return this.ctx.mutex.run(() => (locks && this.onFile() ? this.underWriteLock(() => exec(undefined)) : exec(undefined)));
  }

  /** SQLite on a file (several processes may write), not in memory. */
  private onFile(): boolean {
    const storage = storageOptionsOf(this.ctx.sequelize).storage;
    return typeof storage === 'string' && storage !== '' && storage !== ':memory:' && !storage.includes('mode=memory');
  }

  /**
   * Runs fn between `BEGIN IMMEDIATE` and `COMMIT` on the connection
   * Sequelize uses outside transactions, so other processes cannot write
   * between the pre-read and the write. Not a Sequelize transaction: on a
   * file, each of those opens (and closes) a database connection of its
   * own, which costs more than the write. There is one commit, as for the
   * bare statement. The statements other callers of this process send
   * meanwhile run inside it (their writes through the QueryInterface wait on
   * the mutex); that is why it ends in COMMIT even when fn failed: a failed
   * statement is undone by SQLite itself, and those other statements keep
   * the effect they would have had on their own.
   */
  private async underWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    const statement = (sql: string): Promise<unknown> => insideManagedWrite.run(true, () => this.ctx.sequelize.query(sql, { raw: true, transaction: null }));
    await retrying(() => statement('BEGIN IMMEDIATE'));
    let out: T;
    try {
      out = await fn();
    } catch (error) {
      // A conflict clause of ROLLBACK may have ended the transaction already.
      await statement('COMMIT').catch(() => undefined);
      throw error;
    }
    await statement('COMMIT');
    return out;
  }
}
