/**
 * How one write finds the rows it changes: their exact states before and
 * after it, read from the database, not from the (possibly stale) instance
 * in memory. Both states go to one invalidation (invalidation.ts), after the
 * commit. There are two ways to get them:
 *
 * Row images, one statement (PostgreSQL inserts, updates and deletes;
 * SQLite updates, deletes and one-row inserts; MariaDB 10.0.5+ deletes and
 * 10.5+ one-row inserts): the write's own
 * statement is rewritten to return the old and/or new states of the rows it
 * touched (images/postgres.ts, images/sqlite.ts, images/mariadb.ts, captured
 * by images/statement.ts). The statement is
 * atomic, so there is no transaction of ours and no extra round trip (see
 * writeWithImages).
 *
 * Pre-read / re-read (the rest: MySQL, MariaDB updates, bulk inserts,
 * SQLite updates that set a primary key, upserts and bulk inserts that may
 * touch existing rows, models without a primary key):
 *
 *   1. before: the rows its WHERE selects, read with FOR UPDATE in the write's
 *      transaction (our own one when it has none), so no one changes them
 *      between this read and the write;
 *   2. the write itself, in that transaction (a mass write limited to the
 *      rows read in 1, so that rows committed into its WHERE meanwhile are
 *      left alone: see lockedOnly);
 *   3. after: the same rows again (by primary key), and inserted rows.
 *
 * On SQLite, which has no row locks, writes outside a transaction are
 * serialized by an in-process mutex instead (and, on a file, SQLite's write
 * lock). On either path, over `maxRowsForGranularWrite` rows (or a statement
 * of an unexpected shape) the whole model is invalidated.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Model, ModelStatic, Transaction } from 'sequelize';
import type { CacheopsCore, WriteCacheopsOption } from '../core/cacheops-core';
import { appRow, asBuilt, lockedOnly, primaryKeys, type Row } from './rows';
import { changedRows, invalidateWrite, wholeModel, type Invalidation } from './invalidation';
import { rewrite, takeImages, type ImageKind, type Rewrite } from './images/postgres';
import { deleteReturns, insertReturns, rewriteDelete, rewriteInsert } from './images/mariadb';
import { captureStatement, type StatementCapture } from './images/statement';
import { rememberedRewrite } from './images/rewrite-cache';
import { parseWriteOption } from '../core/find-option';
import { SqliteImages } from './images/sqlite-state';

export type Options = Record<string, unknown> & { transaction?: Transaction | null; cacheops?: WriteCacheopsOption | boolean };
export type AfterSpec = { where?: unknown; appRows?: Row[] } | 'all' | undefined;

/** What a write is, for the protocol: which rows it may touch and how to find them afterwards. */
export interface WriteSpec<R> {
  /** The WHERE (field or attribute keyed) of rows the write may change or delete. */
  readonly before?: unknown;
  /** How to find the rows' new states once the write ran. */
  readonly after?: (result: R, before: Row[]) => AfterSpec;
  /** Invalidate the whole model instead (truncate, unknowable rows). */
  readonly wholeModel?: boolean;
  /** A TRUNCATE: DDL that MySQL/MariaDB commit at once, even inside a transaction. */
  readonly implicitCommit?: boolean;
  /** The write takes its WHERE as an argument: limit it to the rows the pre-read locked (see lockedOnly). */
  readonly narrow?: boolean;
  /**
   * The kind of statement the write sends, when its row images can come from
   * that statement itself (PostgreSQL, images/postgres.ts); its `before` and
   * `after` are then not used.
   */
  readonly images?: ImageKind;
  /** The write sets a primary key column (SQLite then keeps the pre-read: its images are found by rowid, see images/sqlite.ts). */
  readonly setsKey?: boolean;
  /** An insert of one row (`QueryInterface.insert`): on SQLite and MariaDB its statement returns the new state. */
  readonly oneRow?: boolean;
}

/** Runs the write's own statement (with these options and, for a narrowed mass write, this WHERE). */
export type RunWrite<R> = (options: Options, where?: unknown) => Promise<R>;

/** A promise-chain mutex: one guarded write at a time (SQLite only). */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** Set while a wrapped QueryInterface method runs its SQL, so the raw-query wrapper leaves it alone. */
export const insideManagedWrite = new AsyncLocalStorage<boolean>();

/** Deadlocks and serialization failures: the database rolled the transaction back. */
function isRetryable(error: unknown): boolean {
  const parent = (error as { parent?: { code?: unknown; errno?: unknown } } | undefined)?.parent;
  return parent?.code === '40P01' || parent?.code === '40001' || parent?.errno === 1213 || parent?.code === 'ER_LOCK_DEADLOCK' ||
    parent?.code === 'SQLITE_BUSY';
}

/** Runs fn again after a short random pause while it fails retryably (at most 20 times); nothing of a failed run was committed. */
async function retrying<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= 20 || !isRetryable(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5 * attempt * Math.random()));
    }
  }
}

type Outcome<R> = { result: R; before: Row[]; after: Row[] } | { result: R; all: true };

export class WriteProtocol {
  private readonly mutex = new Mutex();
  /** SQLite's row images: the connections' triggers and the tables' column types (images/sqlite-state.ts). */
  readonly sqlite: SqliteImages;

  constructor(readonly core: CacheopsCore) {
    this.sqlite = new SqliteImages(core.sequelize);
  }

  private get sequelize() {
    return this.core.sequelize;
  }

  get isMysql(): boolean {
    return this.core.dialect === 'mysql' || this.core.dialect === 'mariadb';
  }

  /** SQLite on a file (several processes may write), not in memory. */
  private get sqliteFile(): boolean {
    const storage = (this.sequelize as unknown as { options: { storage?: string } }).options.storage;
    return this.core.dialect === 'sqlite' && typeof storage === 'string' && storage !== '' && storage !== ':memory:' && !storage.includes('mode=memory');
  }

  /**
   * Whether a write invalidates nothing (`{ cacheops: { invalidate: false } }`,
   * noInvalidation, cacheops disabled). A bad `cacheops` option throws
   * CacheopsConfigError (find-option.ts): call it before anything is written.
   */
  optedOut(options: Options | undefined): boolean {
    const invalidate = parseWriteOption(options?.cacheops);
    return !invalidate || !this.core.invalidationEnabled;
  }

  /** Reads the current states of rows (all columns, unscoped, soft-deleted too); 'too-many' past the threshold. */
  private async readRows(model: ModelStatic<Model>, where: unknown, transaction: Transaction | undefined, lock: boolean): Promise<Row[] | 'too-many'> {
    if (where === null) return [];
    const limit = this.core.config.maxRowsForGranularWrite;
    const rows = await model.unscoped().findAll({
      where: where as never,
      transaction: transaction ?? null,
      ...(lock && this.core.dialect !== 'sqlite' ? { lock: true } : {}),
      paranoid: false,
      hooks: false,
      raw: false,
      limit: limit + 1,
      cacheops: false,
    } as never);
    if (rows.length > limit) return 'too-many';
    return rows.map((r) => ({ ...(r.dataValues as Row) }));
  }

  /** Runs one write with the before/after protocol of the module comment. */
  async write<R>(model: ModelStatic<Model> | undefined, options: Options, spec: WriteSpec<R>, run: RunWrite<R>): Promise<R> {
    // A transaction that wrote reads around the cache from now on, even when this write opts out of
    // invalidating; the write is bracketed so that a savepoint opened meanwhile drops none of it.
    const userTx = this.core.transactions.current(options);
    const ended = userTx ? this.core.transactions.beginWrite(userTx) : undefined;
    try {
      return await this.writeIn(model, options, spec, run, userTx);
    } finally {
      ended?.();
    }
  }

  private async writeIn<R>(model: ModelStatic<Model> | undefined, options: Options, spec: WriteSpec<R>, run: RunWrite<R>, userTx: Transaction | undefined): Promise<R> {
    const managed = (o: Options, where?: unknown): Promise<R> => insideManagedWrite.run(true, () => run(o, where));
    const optedOut = this.optedOut(options);
    if (!model || optedOut) return managed(options);
    if (spec.wholeModel) {
      const result = await managed(options);
      // MySQL/MariaDB commit a transaction implicitly around TRUNCATE: it stays done even if
      // the transaction later rolls back, so it is invalidated now (and again at the commit).
      if (userTx && spec.implicitCommit && this.isMysql) await invalidateWrite(this.core, wholeModel(model), undefined);
      await invalidateWrite(this.core, wholeModel(model), userTx);
      return result;
    }
    const kind = spec.images;
    if (kind && primaryKeys(model).length > 0) {
      if (this.core.dialect === 'postgres') {
        return this.writeWithImages(model, managed, options, userTx, (sql, table) => rememberedRewrite(model, `pg-${kind}`, sql, () => rewrite(kind, sql, model, table, primaryKeys(model))));
      }
      if (kind === 'delete' && this.isMysql && deleteReturns(await this.serverVersion())) {
        return this.writeWithImages(model, managed, options, userTx, (sql, table) => rememberedRewrite(model, 'mysql-delete', sql, () => rewriteDelete(sql, model, table)));
      }
      if (this.core.dialect === 'sqlite' && (kind === 'delete' || (kind === 'update' && !spec.setsKey))) {
        // Writes outside a transaction queue on the mutex, so none runs inside the
        // BEGIN IMMEDIATE ... COMMIT of a pre-read write of this process (see underWriteLock).
        const go = async (): Promise<{ result: R } | undefined> => {
          for (let attempt = 1; ; attempt += 1) {
            const images = await this.sqlite.prepare(model, kind, userTx);
            if (!images) return undefined;
            try {
              return { result: await this.writeWithImages(model, managed, options, userTx, images.rewrite, images.take) };
            } catch (error) {
              // The temp table went with a rolled back transaction: the statement failed to
              // compile, nothing of it ran; made again, the write is run once more.
              if (attempt > 1 || !this.sqlite.lost(error)) throw error;
            }
          }
        };
        const done = userTx ? await go() : await this.mutex.run(go);
        if (done) return done.result;
      }
    }
    const exec = async (tx: Transaction | undefined): Promise<Outcome<R>> => {
      let before: Row[] = [];
      if (spec.before !== undefined) {
        const read = await this.readRows(model, spec.before, tx, true);
        if (read === 'too-many') return { result: await managed(tx ? { ...options, transaction: tx } : options), all: true };
        before = read;
      }
      const narrowed = spec.narrow && spec.before !== undefined ? lockedOnly(model, spec.before, before) : undefined;
      const o = tx ? { ...options, transaction: tx } : options;
      const images = spec.images === 'insert' && spec.oneRow ? await this.insertImages(model, tx) : undefined;
      const capture: StatementCapture | undefined = images && { sequelize: this.sequelize, ...images, state: 'waiting', before: [], after: [] };
      const result = capture ? await captureStatement(capture, () => managed(o, narrowed)) : await managed(o, narrowed);
      if (capture?.state === 'captured' && capture.after.length <= this.core.config.maxRowsForGranularWrite) return { result, before, after: capture.after };
      // Without images (or a statement not of the expected shape): the rows are read back.
      const after = spec.after?.(result, before);
      if (after === 'all') return { result, all: true };
      const afterRows: Row[] = [];
      if (after?.where !== undefined) {
        const read = await this.readRows(model, after.where, tx, false);
        if (read === 'too-many') return { result, all: true };
        afterRows.push(...read);
      }
      if (after?.appRows) afterRows.push(...after.appRows.map((r) => appRow(model, this.core.dialect, r)));
      return { result, before, after: afterRows };
    };

    let outcome: Outcome<R>;
    if (userTx) {
      outcome = await exec(userTx);
    } else if (this.core.dialect === 'sqlite') {
      // In-process writers queue on the mutex; on a database file, other processes are
      // kept out by SQLite's write lock, taken before the pre-read (see underWriteLock).
      outcome = await this.mutex.run(() => (this.sqliteFile && spec.before !== undefined ? this.underWriteLock(() => exec(undefined)) : exec(undefined)));
    } else if (spec.before === undefined) {
      outcome = await exec(undefined); // inserts: nothing to lock
    } else {
      outcome = await this.inOwnTransaction(exec);
    }
    await invalidateWrite(this.core, 'all' in outcome ? wholeModel(model) : changedRows(model, outcome.before, outcome.after), userTx);
    return outcome.result;
  }

  /**
   * How a one-row insert's statement returns its new state (SQLite,
   * MariaDB 10.5+: `INSERT ... RETURNING`, see images/); undefined where it
   * cannot, and the row is read back by key.
   */
  private async insertImages(model: ModelStatic<Model>, tx: Transaction | undefined): Promise<Pick<StatementCapture, 'rewrite' | 'take'> | undefined> {
    if (this.core.dialect === 'sqlite') return this.sqlite.prepare(model, 'insert', tx);
    if (!this.isMysql || !insertReturns(await this.serverVersion())) return undefined;
    const table = this.quotedTable(model);
    return {
      rewrite: (sql) => rememberedRewrite(model, 'mysql-insert', sql, () => rewriteInsert(sql, model, table)),
      // As findAll builds a row (a TINYINT(1) boolean's 1 becomes true).
      take: (plan, rows) => ({ before: [], after: takeImages(plan, rows).after.map((r) => asBuilt(model, r)) }),
    };
  }

  /**
   * One statement that returns the old and new states of its rows (see
   * images/postgres.ts): atomic by itself, so no transaction of ours, in or
   * out of the caller's. A statement that could not be rewritten invalidates
   * the whole model.
   */
  private async writeWithImages<R>(
    model: ModelStatic<Model>, managed: RunWrite<R>, options: Options, userTx: Transaction | undefined,
    rewriteStatement: (sql: string, table: string) => Rewrite | undefined,
    take: StatementCapture['take'] = takeImages,
  ): Promise<R> {
    const table = this.quotedTable(model);
    const capture: StatementCapture = {
      sequelize: this.sequelize,
      rewrite: (sql) => rewriteStatement(sql, table),
      take,
      state: 'waiting',
      before: [],
      after: [],
    };
    const result = await captureStatement(capture, () => managed(options));
    const limit = this.core.config.maxRowsForGranularWrite;
    const granular = capture.state === 'captured' && capture.before.length <= limit && capture.after.length <= limit;
    const items: Invalidation[] = granular ? changedRows(model, capture.before, capture.after) : wholeModel(model);
    await invalidateWrite(this.core, items, userTx);
    return result;
  }

  private versionCheck: Promise<string> | undefined;

  /** The server's version (asked once; a failed question gives '', which has no RETURNING). */
  private serverVersion(): Promise<string> {
    this.versionCheck ??= this.sequelize.databaseVersion().then((v) => String(v), () => '');
    return this.versionCheck;
  }

  /** The model's table as the dialect quotes it in the statements Sequelize writes. */
  private quotedTable(model: ModelStatic<Model>): string {
    const qg = (this.sequelize.getQueryInterface() as unknown as { queryGenerator: { quoteTable(t: unknown): string } }).queryGenerator;
    return qg.quoteTable(model.getTableName());
  }

  /**
   * `cacheOnSave`: after an instance is saved, its row is put in the get-cache
   * under the key a `findOne({ where: { <field>: value } })` uses (the primary
   * key, or the field the profile names). It is read back through the cache
   * rather than built from the instance, so the key and the value are exactly
   * those of that read, and the race protection applies. Not inside a
   * transaction (nothing is stored there before the commit).
   */
  async cacheOnSave(instance: Model | undefined, options: Options | undefined): Promise<void> {
    const model = instance?.constructor as ModelStatic<Model> | undefined;
    if (!model || !instance) return;
    const profile = this.core.profileOf(model);
    if (!profile?.cacheOnSave || this.core.transactions.current(options)) return;
    const field = typeof profile.cacheOnSave === 'string' ? profile.cacheOnSave : primaryKeys(model)[0];
    const value = field === undefined ? undefined : (instance.dataValues as Row)[field];
    if (field === undefined || value === undefined || value === null) return;
    await model.findOne({ where: { [field]: value } as never, cacheops: true } as never);
  }

  /**
   * SQLite on a file: runs fn between `BEGIN IMMEDIATE` and `COMMIT` on the
   * connection Sequelize uses outside transactions, so other processes cannot
   * write between the pre-read and the write. Not a Sequelize transaction:
   * on a file, each of those opens (and closes) a database connection of its
   * own, which costs more than the write. There is one commit, as for the
   * bare statement. The statements other callers of this process send
   * meanwhile run inside it (their writes through the QueryInterface wait on
   * the mutex); that is why it ends in COMMIT even when fn failed: a failed
   * statement is undone by SQLite itself, and those other statements keep
   * the effect they would have had on their own.
   */
  private async underWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    const statement = (sql: string): Promise<unknown> => insideManagedWrite.run(true, () => this.sequelize.query(sql, { raw: true, transaction: null }));
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

  /**
   * Runs exec in a transaction of ours. Locking the rows first can make two
   * writers deadlock where the bare statements would not have (MySQL gap
   * locks on keys that do not exist yet, e.g. concurrent upserts); the
   * database then aborts one of them, and since nothing of it was committed
   * it is safely run again.
   */
  private async inOwnTransaction<T>(exec: (tx: Transaction) => Promise<T>): Promise<T> {
    return retrying(async () => {
      const tx = await this.sequelize.transaction();
      try {
        const out = await exec(tx);
        await tx.commit();
        return out;
      } catch (error) {
        if (!(tx as unknown as { finished?: string }).finished) {
          try { await tx.rollback(); } catch { /* the connection is gone; the original error matters */ }
        }
        throw error;
      }
    });
  }
}
