/**
 * Write interception: every write path of Sequelize ends in a QueryInterface
 * method (insert, update, bulkInsert, bulkUpdate, delete, bulkDelete, upsert,
 * increment, decrement) or in a raw `sequelize.query`. Each is wrapped here so
 * that hooks being off (`hooks: false`, bulk writes without individualHooks)
 * cannot hide a write.
 *
 * A write invalidates by the exact states of the rows it touches, read from
 * the database, not from the (possibly stale) instance in memory:
 *
 *   1. before: the rows its WHERE selects, read with FOR UPDATE in the write's
 *      transaction (our own one when it has none), so no one changes them
 *      between this read and the write;
 *   2. the write itself, in that transaction (a mass write limited to the
 *      rows read in 1, so that rows committed into its WHERE meanwhile are
 *      left alone: see lockedOnly);
 *   3. after: the same rows again (by primary key), and inserted rows.
 *
 * Both states go to one invalidation script call, after the commit. On SQLite,
 * which has no row locks, writes outside a transaction are serialized by an
 * in-process mutex instead. Over `maxRowsForGranularWrite` rows the whole model
 * is invalidated. Raw SQL writes invalidate every model whose table they name.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Op, QueryTypes, type Model, type ModelStatic, type Transaction } from 'sequelize';
import type { CacheopsCore, WriteCacheopsOption } from './cacheops';
import { modelsNamedIn, tableIndex, tableOf } from './query/dependencies';
import { appRow, byPrimaryKeys, byUniqueKeys, lockedOnly, primaryKeys, toAttributes, type Row } from './write-rows';
import { referencing } from './foreign-keys';

type Options = Record<string, unknown> & { transaction?: Transaction | null; cacheops?: WriteCacheopsOption | boolean };
type AfterSpec = { where?: unknown; appRows?: Row[] } | 'all' | undefined;

interface WriteSpec<R> {
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
}

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
const insideManagedWrite = new AsyncLocalStorage<boolean>();

const WRITE_SQL = /^\s*(?:\/\*[\s\S]*?\*\/\s*|--[^\n]*\n\s*)*(?:with\b[\s\S]*?\)\s*)?(insert|update|delete|truncate|replace|merge|upsert|alter|drop|create|rename)\b/i;
const DDL_SQL = /^\s*(?:\/\*[\s\S]*?\*\/\s*|--[^\n]*\n\s*)*(truncate|alter|drop|create|rename)\b/i;
const WRITE_TYPES = new Set<string>([QueryTypes.INSERT, QueryTypes.UPDATE, QueryTypes.BULKUPDATE, QueryTypes.BULKDELETE, QueryTypes.DELETE, QueryTypes.UPSERT]);

/** Deadlocks and serialization failures: the database rolled the transaction back. */
function isRetryable(error: unknown): boolean {
  const parent = (error as { parent?: { code?: unknown; errno?: unknown } } | undefined)?.parent;
  return parent?.code === '40P01' || parent?.code === '40001' || parent?.errno === 1213 || parent?.code === 'ER_LOCK_DEADLOCK' ||
    parent?.code === 'SQLITE_BUSY';
}

export class WriteInterceptor {
  private readonly mutex = new Mutex();

  constructor(private readonly core: CacheopsCore) {}

  private get sequelize() {
    return this.core.sequelize;
  }

  private get isMysql(): boolean {
    return this.core.dialect === 'mysql' || this.core.dialect === 'mariadb';
  }

  /** SQLite on a file (several processes may write), not in memory. */
  private get sqliteFile(): boolean {
    const storage = (this.sequelize as unknown as { options: { storage?: string } }).options.storage;
    return this.core.dialect === 'sqlite' && typeof storage === 'string' && storage !== '' && storage !== ':memory:' && !storage.includes('mode=memory');
  }

  private optedOut(options: Options | undefined): boolean {
    const c = options?.cacheops;
    return !this.core.invalidationEnabled || (typeof c === 'object' && c !== null && c.invalidate === false);
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
  async write<R>(model: ModelStatic<Model> | undefined, options: Options, spec: WriteSpec<R>, run: (options: Options, where?: unknown) => Promise<R>): Promise<R> {
    const managed = (o: Options, where?: unknown): Promise<R> => insideManagedWrite.run(true, () => run(o, where));
    // A transaction that wrote reads around the cache from now on, even when this write opts out of invalidating.
    const userTx = this.core.transactions.current(options);
    if (userTx) this.core.transactions.markWritten(userTx);
    if (!model || this.optedOut(options)) return managed(options);
    const table = tableOf(model);
    if (spec.wholeModel) {
      const result = await managed(options);
      const items = [{ model, table, rows: 'all' as const }, ...referencing(model, 'all')];
      // MySQL/MariaDB commit a transaction implicitly around TRUNCATE: it stays done even if
      // the transaction later rolls back, so it is invalidated now (and again at the commit).
      if (userTx && spec.implicitCommit && this.isMysql) await this.core.invalidate(items);
      await this.core.invalidate(items, userTx);
      return result;
    }
    const exec = async (tx: Transaction | undefined): Promise<{ result: R; before: Row[]; after: Row[] } | { result: R; all: true }> => {
      let before: Row[] = [];
      if (spec.before !== undefined) {
        const read = await this.readRows(model, spec.before, tx, true);
        if (read === 'too-many') return { result: await managed(tx ? { ...options, transaction: tx } : options), all: true };
        before = read;
      }
      const narrowed = spec.narrow && spec.before !== undefined ? lockedOnly(model, spec.before, before) : undefined;
      const result = await managed(tx ? { ...options, transaction: tx } : options, narrowed);
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

    let outcome: Awaited<ReturnType<typeof exec>>;
    if (userTx) {
      outcome = await exec(userTx);
    } else if (this.core.dialect === 'sqlite') {
      // In-process writers queue on the mutex; on a database file, other processes are
      // kept out by an IMMEDIATE transaction (SQLite's write lock, taken before the pre-read).
      outcome = await this.mutex.run(() => (this.sqliteFile && spec.before !== undefined ? this.inOwnTransaction(exec, 'IMMEDIATE') : exec(undefined)));
    } else if (spec.before === undefined) {
      outcome = await exec(undefined); // inserts: nothing to lock
    } else {
      outcome = await this.inOwnTransaction(exec);
    }
    if ('all' in outcome) {
      await this.core.invalidate([{ model, table, rows: 'all' }, ...referencing(model, 'all')], userTx);
    } else if (outcome.before.length + outcome.after.length > 0) {
      const rows = [...outcome.before, ...outcome.after];
      await this.core.invalidate([{ model, table, rows }, ...referencing(model, { before: outcome.before, after: outcome.after })], userTx);
    }
    return outcome.result;
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
   * Runs exec in a transaction of ours. Locking the rows first can make two
   * writers deadlock where the bare statements would not have (MySQL gap
   * locks on keys that do not exist yet, e.g. concurrent upserts); the
   * database then aborts one of them, and since nothing of it was committed
   * it is safely run again.
   */
  private async inOwnTransaction<T>(exec: (tx: Transaction) => Promise<T>, type?: 'IMMEDIATE'): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      const tx = await this.sequelize.transaction(type ? { type: type as never } : {});
      try {
        const out = await exec(tx);
        await tx.commit();
        return out;
      } catch (error) {
        if (!(tx as unknown as { finished?: string }).finished) {
          try { await tx.rollback(); } catch { /* the connection is gone; the original error matters */ }
        }
        if (attempt >= 20 || !isRetryable(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 5 * attempt * Math.random()));
      }
    }
  }

  private modelOfTable(tableName: unknown, options?: Options): ModelStatic<Model> | undefined {
    const fromOptions = options?.['model'];
    if (typeof fromOptions === 'function') return fromOptions as ModelStatic<Model>;
    const t = typeof tableName === 'string' ? tableName
      : (tableName as { tableName?: string; schema?: string } | undefined)?.schema
        ? `${(tableName as { schema: string }).schema}.${(tableName as { tableName: string }).tableName}`
        : (tableName as { tableName?: string } | undefined)?.tableName;
    if (!t) return undefined;
    const index = tableIndex(this.sequelize);
    return index.byTable.get(t) ?? [...index.byTable.values()].find((m) => m.tableName === t);
  }

  /** Wraps this Sequelize's QueryInterface write methods and `sequelize.query`. */
  install(): void {
    // The QueryInterface methods are typed loosely on purpose: they are Sequelize internals.
    type Fn = (...args: never[]) => Promise<unknown>;
    const qi = this.sequelize.getQueryInterface() as unknown as Record<string, Fn>;
    const self = this;
    const wrap = (name: string, body: (original: Fn, thisArg: unknown, args: unknown[]) => Promise<unknown>): void => {
      const original = qi[name]!;
      qi[name] = function wrapped(this: unknown, ...args: never[]) {
        return body(original, this, args);
      } as Fn;
    };
    const call = (original: Fn, thisArg: unknown, args: unknown[], optionsIndex: number, whereIndex?: number) => (o: Options, where?: unknown) => {
      const next = [...args];
      next[optionsIndex] = o;
      if (whereIndex !== undefined && where !== undefined) next[whereIndex] = where;
      return original.apply(thisArg, next as never[]);
    };

    wrap('insert', (original, thisArg, args) => {
      const [instance, , , options] = args as [Model, unknown, Row, Options];
      const model = instance?.constructor as ModelStatic<Model> | undefined;
      return self.write(model, options ?? {}, {
        after: (result) => {
          const built = (Array.isArray(result) ? result[0] : result) as Model | undefined;
          const values = (built ?? instance).dataValues as Row;
          const where = byPrimaryKeys(model!, [values]);
          return where === undefined ? { appRows: [values] } : { where };
        },
      }, call(original, thisArg, args, 3)).then((r) => self.cacheOnSave(instance, options).then(() => r));
    });

    wrap('update', (original, thisArg, args) => {
      const [instance, , values, identifier, options] = args as [Model, unknown, Row, unknown, Options];
      const model = instance?.constructor as ModelStatic<Model> | undefined;
      return self.write(model, options ?? {}, {
        before: identifier,
        after: (_result, before) => {
          const changesKey = primaryKeys(model!).some((k) => k in toAttributes(model!, values));
          if (changesKey) {
            const where = byPrimaryKeys(model!, [{ ...(instance.dataValues as Row) }]);
            return where === undefined ? 'all' : { where };
          }
          const where = byPrimaryKeys(model!, before);
          return where === undefined ? 'all' : { where };
        },
      }, call(original, thisArg, args, 4)).then((r) => self.cacheOnSave(instance, options).then(() => r));
    });

    const byBeforeKeys = (model: ModelStatic<Model>, values: Row | undefined) => (_r: unknown, before: Row[]): AfterSpec => {
      if (values && primaryKeys(model).some((k) => k in toAttributes(model, values))) return 'all';
      const where = byPrimaryKeys(model, before);
      return where === undefined ? 'all' : { where };
    };

    wrap('bulkUpdate', (original, thisArg, args) => {
      const [tableName, values, identifier, options] = args as [unknown, Row, unknown, Options];
      const model = self.modelOfTable(tableName, options);
      return self.write(model, options ?? {}, { before: identifier ?? {}, narrow: true, after: model && byBeforeKeys(model, values) }, call(original, thisArg, args, 3, 2));
    });

    for (const name of ['increment', 'decrement']) {
      wrap(name, (original, thisArg, args) => {
        const [model, , where, , , options] = args as [ModelStatic<Model>, unknown, unknown, Row, Row, Options];
        return self.write(model, options ?? {}, { before: where ?? {}, narrow: true, after: byBeforeKeys(model, undefined) }, call(original, thisArg, args, 5, 2));
      });
    }

    wrap('delete', (original, thisArg, args) => {
      const [instance, , identifier, options] = args as [Model, unknown, unknown, Options];
      return self.write(instance?.constructor as ModelStatic<Model>, options ?? {}, { before: identifier }, call(original, thisArg, args, 3));
    });

    wrap('bulkDelete', (original, thisArg, args) => {
      const [tableName, where, options, model] = args as [unknown, unknown, Options, ModelStatic<Model> | undefined];
      const m = model ?? self.modelOfTable(tableName, options);
      const wholeModel = options?.['truncate'] === true || where === undefined;
      return self.write(m, options ?? {}, wholeModel ? { wholeModel, implicitCommit: options?.['truncate'] === true } : { before: where, narrow: true }, call(original, thisArg, args, 2, 1));
    });

    wrap('upsert', (original, thisArg, args) => {
      const [tableName, insertValues, , , options] = args as [unknown, Row, Row, unknown, Options];
      const model = self.modelOfTable(tableName, options);
      if (!model) return self.write(undefined, options ?? {}, {}, call(original, thisArg, args, 4));
      const { where, complete } = byUniqueKeys(model, [insertValues]);
      return self.write(model, options ?? {}, complete && where !== null ? {
        before: where,
        after: (_r, before) => {
          const keys = byPrimaryKeys(model, before);
          return keys === undefined ? 'all' : { where: keys === null ? where : { [Op.or]: [where, keys] } };
        },
      } : { wholeModel: true }, call(original, thisArg, args, 4));
    });

    wrap('bulkInsert', (original, thisArg, args) => {
      const [tableName, records, options] = args as [unknown, Row[], Options];
      const model = self.modelOfTable(tableName, options);
      if (!model) return self.write(undefined, options ?? {}, {}, call(original, thisArg, args, 2));
      if (records.length > self.core.config.maxRowsForGranularWrite) {
        return self.write(model, options ?? {}, { wholeModel: true }, call(original, thisArg, args, 2));
      }
      const mayTouchExisting = Boolean(options?.['updateOnDuplicate'] || options?.['ignoreDuplicates']);
      const { where, complete } = byUniqueKeys(model, records);
      if (mayTouchExisting && !complete) return self.write(model, options ?? {}, { wholeModel: true }, call(original, thisArg, args, 2));
      return self.write(model, options ?? {}, {
        ...(mayTouchExisting ? { before: where } : {}),
        after: (_r, before) => {
          const keys = byPrimaryKeys(model, before);
          if (keys === undefined) return 'all';
          const parts = [where, keys].filter((w) => w !== null);
          // Rows the application gave no key for can only be known by their values.
          const appRows = complete ? [] : records;
          return { where: parts.length === 0 ? null : parts.length === 1 ? parts[0] : { [Op.or]: parts }, appRows };
        },
      }, call(original, thisArg, args, 2));
    });

    const sequelize = this.sequelize as unknown as { query: (sql: unknown, options?: Options) => Promise<unknown> };
    const originalQuery = sequelize.query;
    sequelize.query = async function query(this: unknown, sql: unknown, options?: Options) {
      if (insideManagedWrite.getStore() || !self.core.config.enabled) return originalQuery.call(this, sql, options);
      const text = typeof sql === 'string' ? sql : (sql as { query?: string } | undefined)?.query ?? '';
      const type = options?.['type'] as string | undefined;
      const isWrite = (type !== undefined && WRITE_TYPES.has(type)) || ((type === undefined || type === QueryTypes.RAW) && WRITE_SQL.test(text));
      if (!isWrite) return originalQuery.call(this, sql, options);
      const tx = self.core.transactions.current(options);
      if (tx) self.core.transactions.markWritten(tx);
      if (self.optedOut(options)) return originalQuery.call(this, sql, options);
      const result = await originalQuery.call(this, sql, options);
      const models = modelsNamedIn(self.sequelize, text);
      const items = models.map((m) => ({ model: m, table: tableOf(m), rows: 'all' as const }));
      // DDL (TRUNCATE, ALTER, ...) commits at once on MySQL/MariaDB, whatever the transaction does next.
      if (tx && self.isMysql && DDL_SQL.test(text)) await self.core.invalidate(items);
      await self.core.invalidate(items, tx);
      return result;
    };
  }
}
