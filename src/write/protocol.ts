/**
 * How one write finds the rows it changes: their exact states before and
 * after it, read from the database, not from the (possibly stale) instance
 * in memory. Both states go to one invalidation (invalidation.ts), after the
 * commit. There are two ways to get them; the model's write strategy
 * (strategies/, chosen once per model) says which a write takes:
 *
 * Row images, one statement (PostgreSQL inserts, updates and deletes;
 * SQLite updates, deletes and one-row inserts; MariaDB 10.0.5+ deletes and
 * 10.5+ one-row inserts): the write's own
 * statement is rewritten to return the old and/or new states of the rows it
 * touched (images/returning.ts, with images/postgres.ts, images/sqlite.ts,
 * images/mariadb.ts, captured by images/statement.ts). The statement is
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
 * lock; strategies/sqlite.ts). On either path, over `maxRowsForGranularWrite` rows (or a statement
 * of an unexpected shape) the whole model is invalidated.
 */
import type { Model, ModelStatic, Transaction } from 'sequelize';
import type { CacheopsCore, WriteCacheopsOption } from '../core/cacheops-core';
import { appRow, lockedOnly, primaryKeys, type Row } from './rows';
import { changedRows, invalidateWrite, wholeModel, type Invalidation } from './invalidation';
import { takeImages, type ImageKind, type Rewrite } from './images/returning';
import { captureStatement, type StatementCapture } from './images/statement';
import { parseWriteOption } from '../core/find-option';
import { SqliteImages } from './images/sqlite-state';
import { quotedTable } from '../core/tables';
import { insideManagedWrite, Mutex } from './strategies/strategy';
import { WriteStrategies } from './strategies/choose';
import { StreamWriter } from './stream-write';

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
   * that statement itself (the model's write strategy says whether it can,
   * see strategies/); its `before` and `after` are then not used.
   */
  readonly images?: ImageKind;
  /** The write sets a primary key column (SQLite then keeps the pre-read: its images are found by rowid, see images/sqlite.ts). */
  readonly setsKey?: boolean;
  /** An insert of one row (`QueryInterface.insert`): on SQLite and MariaDB its statement returns the new state. */
  readonly oneRow?: boolean;
}

/** Runs the write's own statement (with these options and, for a narrowed mass write, this WHERE). */
export type RunWrite<R> = (options: Options, where?: unknown) => Promise<R>;

type Outcome<R> = { result: R; before: Row[]; after: Row[] } | { result: R; all: true };

export class WriteProtocol {
  /** SQLite's row images: the connections' triggers and the tables' column types (images/sqlite-state.ts). */
  readonly sqlite: SqliteImages;
  private readonly strategies: WriteStrategies;
  /** `writes: 'stream'` (PostgreSQL, MariaDB): writes resolved by the change stream (stream-write.ts). */
  private readonly stream: StreamWriter | undefined;

  constructor(readonly core: CacheopsCore) {
    this.sqlite = new SqliteImages(core.sequelize);
    this.strategies = new WriteStrategies({ core, sequelize: core.sequelize, sqlite: this.sqlite, mutex: new Mutex(), serverVersion: () => this.serverVersion() });
    if (core.config.writes === 'stream' && core.config.enabled) {
      if (['postgres', 'mysql', 'mariadb'].includes(core.dialect)) {
        const stream = new StreamWriter(core);
        this.stream = stream;
        core.closing.push(() => stream.close());
      } else {
        // One configuration for every environment: the mode is valid, this database keeps the synchronous path.
        core.config.logger(`writes: 'stream' is not available on ${core.dialect === 'sqlite' ? 'SQLite (no change stream between connections carries rows)' : core.dialect}: ` +
          'writes take the synchronous path');
      }
    }
  }

  private get sequelize() {
    return this.core.sequelize;
  }

  get isMysql(): boolean {
    return this.core.dialect === 'mysql' || this.core.dialect === 'mariadb';
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
    if (this.stream?.takes()) return this.stream.write(model, managed, options, userTx);
    const strategy = this.strategies.of(model);
    if (spec.images) {
      const request = { kind: spec.images, ...(spec.setsKey ? { setsKey: true } : {}) };
      const done = await strategy.images(model, request, userTx, (plan) => this.writeWithImages(model, managed, options, userTx, plan.rewrite, plan.take));
      if (done) return done.result;
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
      const images = spec.images === 'insert' && spec.oneRow ? await strategy.insertImages(model, tx) : undefined;
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

    const outcome = userTx ? await exec(userTx) : await strategy.preRead(exec, spec.before !== undefined);
    await invalidateWrite(this.core, 'all' in outcome ? wholeModel(model) : changedRows(model, outcome.before, outcome.after), userTx);
    return outcome.result;
  }

  /**
   * One statement that returns the old and new states of its rows (see
   * images/returning.ts): atomic by itself, so no transaction of ours, in or
   * out of the caller's. A statement that could not be rewritten invalidates
   * the whole model.
   */
  private async writeWithImages<R>(
    model: ModelStatic<Model>, managed: RunWrite<R>, options: Options, userTx: Transaction | undefined,
    rewriteStatement: (sql: string, table: string) => Rewrite | undefined,
    take: StatementCapture['take'] = takeImages,
  ): Promise<R> {
    const table = quotedTable(this.sequelize, model);
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
}
