/**
 * `writes: 'stream'` on PostgreSQL: a write sends the statement plain
 * Sequelize sends, with its transaction id added to a RETURNING
 * (`RETURNING <Sequelize's own>, txid_current() AS "__co_xid"`, taken out of
 * the result before Sequelize reads it, see images/statement.ts): one
 * statement, no round trip of its own. The change stream (stream/pg-apply.ts)
 * invalidates the transaction's rows by their old and new states; the write
 * resolves once it has (stream-wait.ts), or after its transaction's commit
 * inside one. Its wait bounded, it then invalidates its tables model-wide.
 *
 * A statement that changed no row returns no id: its transaction holds
 * nothing to invalidate (PostgreSQL 15 does not even decode an empty
 * transaction), and the write resolves at once. A write rolled back by a
 * ROLLBACK TO SAVEPOINT drops its queued wait with the rest of what the
 * savepoint undid (core/transactions.ts); a rolled back transaction never
 * runs its queue.
 */
import type { Model, ModelStatic, Transaction } from 'sequelize';
import type { CacheopsCore } from '../core/cacheops-core';
import { captureStatement, type StatementCapture } from './images/statement';
import { RETURNING_LIST, splitReturning, type Rewrite } from './images/returning';
import { invalidateWrite, wholeModel } from './invalidation';
import { StreamWaits, xid32 } from './stream-wait';
import type { Options, RunWrite } from './protocol';

const XID = '__co_xid';
const WRITE = /^(?:INSERT|UPDATE|DELETE)\s/i;

/** The statement with the transaction id in its RETURNING; undefined for another shape (not rewritten). */
export function withTransactionId(sql: string): Rewrite | undefined {
  const text = sql.trim().replace(/;$/, '');
  if (!WRITE.test(text)) return undefined;
  const { head, returning } = splitReturning(text);
  if (returning !== undefined && !RETURNING_LIST.test(returning)) return undefined;
  return {
    sql: `${head} RETURNING ${returning === undefined ? '' : `${returning},`}txid_current() AS "${XID}"`,
    returnsRows: returning !== undefined, old: false, new: false, columns: [], driver: 'pg',
  };
}

export class StreamWriter {
  readonly waits: StreamWaits;

  constructor(private readonly core: CacheopsCore) {
    this.waits = new StreamWaits(core);
  }

  /** Whether this write goes through the stream (else the synchronous path). */
  takes(): boolean {
    return this.waits.usable();
  }

  async write<R>(model: ModelStatic<Model>, managed: RunWrite<R>, options: Options, userTx: Transaction | undefined): Promise<R> {
    let xid: number | undefined;
    const capture: StatementCapture = {
      sequelize: this.core.sequelize,
      rewrite: withTransactionId,
      take: (_plan, rows) => {
        for (const row of rows) {
          xid ??= xid32(row[XID]);
          delete row[XID];
        }
        return { before: [], after: [] };
      },
      state: 'waiting', before: [], after: [],
    };
    const result = await captureStatement(capture, () => managed(options));
    // 'waiting': no statement was sent (nothing to write).
    if (capture.state === 'waiting') return result;
    // Not rewritten: its transaction is not known.
    if (capture.state === 'unknown') {
      await invalidateWrite(this.core, wholeModel(model), userTx);
      return result;
    }
    if (xid === undefined) return result; // no row changed
    const id = xid;
    const settle = (): Promise<void> => this.settle(model, id);
    if (userTx) this.core.transactions.defer(userTx, settle);
    else await settle();
    return result;
  }

  /** Waits for the stream; past the bound, the tables model-wide (the transaction has committed). */
  private async settle(model: ModelStatic<Model>, xid: number): Promise<void> {
    // Run after the autocommitted statement or the COMMIT returned (afterCommit).
    this.waits.committed(xid);
    const outcome = await this.waits.wait(xid);
    if (outcome === 'done') {
      // The consumer's invalidation deleted keys this process's near caches may hold.
      await this.core.near?.tracker.barrier();
      return;
    }
    await invalidateWrite(this.core, wholeModel(model), undefined);
  }

  close(): Promise<void> {
    return this.waits.close();
  }
}
