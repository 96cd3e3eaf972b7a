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
 * MariaDB: the statement is not changed at all. Each connection tracks
 * `last_gtid` (`session_track_system_variables`, set once per connection), so
 * the OK packet of an autocommitted write, and of a COMMIT, carries the
 * transaction's GTID (mysql2: `stateChanges.systemVariables.last_gtid`); the
 * COMMIT's is read by wrapping QueryInterface.commitTransaction. A write that
 * changed rows but came back without a GTID (binlog off for the session, a
 * server without the variable) invalidates model-wide. MySQL keeps the
 * synchronous path (its GTIDs are not read by the consumer).
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
import { queryInterfaceMethods } from '../core/sequelize-internals';
import { captureStatement, type StatementCapture } from './images/statement';
import { RETURNING_LIST, splitReturning, type Rewrite } from './images/returning';
import { invalidateWrite, wholeModel } from './invalidation';
import { StreamWaits, xid32, type TransactionId } from './stream-wait';
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

/** MariaDB: what each connection sends once, so that OK packets carry the transaction's GTID. */
const TRACK_GTID = "SET SESSION session_track_system_variables = CONCAT_WS(',', NULLIF(@@session.session_track_system_variables, ''), 'last_gtid')";

/** The statement unchanged, its OK packet read (MariaDB). */
function okPacket(pattern: RegExp) {
  return (sql: string): Rewrite | undefined => (pattern.test(sql.trim())
    ? { sql, returnsRows: false, old: false, new: false, columns: [], driver: 'mysql-ok', prepare: TRACK_GTID }
    : undefined);
}

/** The GTID and affected rows of mysql2's OK packet header. */
function okFacts(header: Record<string, unknown> | undefined): { gtid: TransactionId | undefined; affected: number } {
  const changes = header?.['stateChanges'] as { systemVariables?: Record<string, unknown> } | undefined;
  const gtid = changes?.systemVariables?.['last_gtid'];
  return { gtid: typeof gtid === 'string' && gtid !== '' ? gtid : undefined, affected: Number(header?.['affectedRows'] ?? 0) };
}

export class StreamWriter {
  readonly waits: StreamWaits;
  private readonly mysql: boolean;
  /** MySQL/MariaDB: whether the server is MariaDB (asked once; until known, writes take the synchronous path). */
  private mariadb: boolean | undefined;
  /** MariaDB: the GTID each root transaction's COMMIT reported. */
  private readonly commits = new WeakMap<Transaction, TransactionId>();

  constructor(private readonly core: CacheopsCore) {
    this.waits = new StreamWaits(core);
    this.mysql = core.dialect === 'mysql' || core.dialect === 'mariadb';
    if (this.mysql) {
      core.sequelize.databaseVersion().then((v) => {
        this.mariadb = /mariadb/i.test(String(v));
        if (!this.mariadb) core.config.logger("writes: 'stream' is not available on MySQL (the consumer reads no GTIDs there): writes take the synchronous path");
      }, () => { this.mariadb = undefined; });
      this.followCommits();
    } else this.mariadb = false;
  }

  /** MariaDB: the GTID of each COMMIT, from its OK packet. */
  private followCommits(): void {
    type Fn = (...args: unknown[]) => Promise<unknown>;
    const qi = queryInterfaceMethods<Fn>(this.core.sequelize);
    const original = qi['commitTransaction']!;
    const commits = this.commits;
    const sequelize = this.core.sequelize;
    qi['commitTransaction'] = async function commitTransaction(this: unknown, ...args: unknown[]) {
      const transaction = args[0] as Transaction;
      const capture: StatementCapture = {
        sequelize, rewrite: okPacket(/^COMMIT\b/i), state: 'waiting', before: [], after: [],
        take: (_plan, rows) => {
          const { gtid } = okFacts(rows[0]);
          if (gtid) commits.set(transaction, gtid);
          return { before: [], after: [] };
        },
      };
      return captureStatement(capture, () => original.apply(this, args));
    };
  }

  /** Whether this write goes through the stream (else the synchronous path). */
  takes(): boolean {
    if (this.mysql && this.mariadb !== true) return false;
    return this.waits.usable();
  }

  async write<R>(model: ModelStatic<Model>, managed: RunWrite<R>, options: Options, userTx: Transaction | undefined): Promise<R> {
    let xid: TransactionId | undefined;
    let affected = 0;
    const capture: StatementCapture = {
      sequelize: this.core.sequelize,
      rewrite: this.mysql ? okPacket(WRITE) : withTransactionId,
      take: (_plan, rows) => {
        if (this.mysql) ({ gtid: xid, affected } = okFacts(rows[0]));
        else {
          for (const row of rows) {
            xid ??= xid32(row[XID]);
            delete row[XID];
          }
        }
        // Autocommitted: its reply says it committed. Told now, before Sequelize builds its
        // result, the consumer (whose stream may already hold the transaction) skips its
        // visibility question for it more often.
        if (!userTx && xid !== undefined) this.waits.committed(xid);
        return { before: [], after: [] };
      },
      state: 'waiting', before: [], after: [],
    };
    const end = userTx ? undefined : this.waits.sending();
    let result: R;
    try {
      result = await captureStatement(capture, () => managed(options));
    } finally {
      end?.();
    }
    // 'waiting': no statement was sent (nothing to write).
    if (capture.state === 'waiting') return result;
    // Not rewritten: its transaction is not known.
    if (capture.state === 'unknown') {
      await invalidateWrite(this.core, wholeModel(model), userTx);
      return result;
    }
    if (this.mysql && userTx) {
      // MariaDB tells the GTID at the COMMIT.
      if (affected > 0) {
        const root = this.core.transactions.root(userTx);
        this.core.transactions.defer(userTx, () => this.settleId(model, this.commits.get(root)));
      }
      return result;
    }
    if (xid === undefined) {
      // Rows changed that the stream will not name (MariaDB without the GTID): the tables now.
      if (affected > 0) await invalidateWrite(this.core, wholeModel(model), userTx);
      return result; // else no row changed
    }
    const id = xid;
    const settle = (): Promise<void> => this.settle(model, id);
    if (userTx) this.core.transactions.defer(userTx, settle);
    else await settle();
    return result;
  }

  private async settleId(model: ModelStatic<Model>, id: TransactionId | undefined): Promise<void> {
    if (id === undefined) await invalidateWrite(this.core, wholeModel(model), undefined);
    else await this.settle(model, id);
  }

  /** Waits for the stream; past the bound, the tables model-wide (the transaction has committed). */
  private async settle(model: ModelStatic<Model>, xid: TransactionId): Promise<void> {
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
