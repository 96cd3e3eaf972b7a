/**
 * What SQLite's row images (sqlite.ts) need beside the statement: the
 * trigger on each connection that writes (created on its first update of a
 * table, its temp table emptied now and then), and each table's declared
 * column types (read once; DDL through this Sequelize forgets both, see
 * raw-sql.ts).
 *
 * Temp tables and triggers are transactional: made inside a transaction or
 * savepoint that rolls back (on a database in memory every statement shares
 * one connection), they are gone again. A trigger found missing makes the
 * write invalidate its whole model (the `ok` column); a temp table missing
 * makes the statement fail before it runs, and the write is run again once
 * they are made anew (../strategies/sqlite.ts).
 */
import { QueryTypes, type Model, type ModelStatic, type Sequelize, type Transaction } from 'sequelize';
import type { Rewrite } from './returning';
import type { StatementCapture } from './statement';
import { rememberedRewrite } from './rewrite-cache';
import { cleanupSql, installSql, rewriteSqlite, takeSqliteImages, unshadowedRowid, type TableColumns } from './sqlite';
import { connectionManagerOf, connectionOf } from '../../core/sequelize-internals';
import { quotedTable } from '../../core/tables';

/** A node-sqlite3 Database (a Sequelize connection). */
interface SqliteConnection { exec(sql: string, callback: (error: Error | null) => void): unknown }

/** Statements (or returned rows) after which a table's temp table is emptied. */
const CLEANUP_STATEMENTS = 256;
const CLEANUP_ROWS = 4096;

interface Installed { statements: number; rows: number }

export interface SqliteStatementImages {
  readonly rewrite: (sql: string) => Rewrite | undefined;
  readonly take: StatementCapture['take'];
}

export class SqliteImages {
  private types = new Map<string, Promise<TableColumns>>();
  /** Per connection: the tables whose trigger it has, with what its temp table holds. */
  private installed = new WeakMap<object, Map<string, Installed>>();
  /** Tables the trigger could not be made for. */
  private unsupported = new Set<string>();

  constructor(private readonly sequelize: Sequelize) {}

  /** DDL ran: tables may have been dropped (with their triggers) or changed. */
  schemaChanged(): void {
    this.types = new Map();
    this.installed = new WeakMap();
    this.unsupported = new Set();
  }

  /**
   * How to rewrite a write's statement and read its images (see sqlite.ts),
   * on the connection of `transaction`; undefined when its table cannot have
   * the trigger (say a WITHOUT ROWID table): the write then keeps the pre-read.
   */
  async prepare(model: ModelStatic<Model>, kind: 'update' | 'delete' | 'insert', transaction: Transaction | undefined): Promise<SqliteStatementImages | undefined> {
    const quoted = quotedTable(this.sequelize, model);
    const name = quoted.replace(/^`|`$/g, '').replace(/``/g, '`');
    const types = await this.columnTypes(quoted, transaction);
    let entry: Installed | undefined;
    let tables: Map<string, Installed> | undefined;
    const rowid = types.rowid;
    if (kind !== 'delete' && rowid === undefined) return undefined;
    if (kind === 'update' && rowid !== undefined) {
      const connection = await this.connection(transaction);
      tables = this.installed.get(connection);
      if (!tables) this.installed.set(connection, (tables = new Map()));
      entry = tables.get(name);
      if (!entry) {
        if (this.unsupported.has(quoted)) return undefined;
        try {
          await exec(connection, installSql(quoted, name, { ...types, rowid }));
        } catch {
          this.unsupported.add(quoted);
          return undefined;
        }
        entry = { statements: 0, rows: 0 };
        tables.set(name, entry);
      } else if (entry.statements >= CLEANUP_STATEMENTS || entry.rows >= CLEANUP_ROWS) {
        await exec(connection, cleanupSql(name));
        entry.statements = 0;
        entry.rows = 0;
      }
    }
    const installed = entry;
    return {
      rewrite: (sql) => rememberedRewrite(model, `sqlite-${kind}`, sql, () => rewriteSqlite(kind, sql, model, quoted, name, rowid)),
      take: (plan, rows) => {
        const images = takeSqliteImages(plan, rows, model, types);
        if (installed) {
          installed.statements += 1;
          installed.rows += rows.length;
          // The trigger was gone (the table dropped and made anew): made again on the next update.
          if (images.unknown) tables?.delete(name);
        }
        return images;
      },
    };
  }

  /**
   * Whether a write failed because its connection lost our temp table (made
   * inside a transaction or savepoint that was rolled back); the tables are
   * then forgotten, to be made again.
   */
  lost(error: unknown): boolean {
    const e = error as { message?: unknown; parent?: { message?: unknown } } | undefined;
    const message = `${String(e?.parent?.message ?? '')} ${String(e?.message ?? '')}`;
    if (!/no such table: (?:temp\.)?__co_old_/.test(message)) return false;
    this.installed = new WeakMap();
    return true;
  }

  /** A table's columns and their declared types (`PRAGMA table_info`), and its rowid's name, read once. */
  private columnTypes(quoted: string, transaction: Transaction | undefined): Promise<TableColumns> {
    let types = this.types.get(quoted);
    if (!types) {
      const query = (sql: string) => this.sequelize.query(sql, { type: QueryTypes.SELECT, raw: true, transaction: transaction ?? null });
      types = query(`PRAGMA table_info(${quoted})`).then(async (rows) => {
        const list = rows as { name: string; type: string }[];
        const fields = list.map((r) => r.name);
        // A WITHOUT ROWID table has none: the probe fails to compile (and reads no row).
        const name = unshadowedRowid(fields);
        const rowid = name === undefined ? undefined : await query(`SELECT ${name} FROM ${quoted} LIMIT 0`).then(() => name, () => undefined);
        return { fields, types: new Map(list.map((r) => [r.name, r.type])), rowid };
      });
      this.types.set(quoted, types);
      types.catch(() => this.types.delete(quoted));
    }
    return types;
  }

  /** The connection a statement of this transaction (or of none) runs on. */
  private async connection(transaction: Transaction | undefined): Promise<SqliteConnection & object> {
    const fromTx = transaction && connectionOf<SqliteConnection & object>(transaction);
    if (fromTx) return fromTx;
    return connectionManagerOf<SqliteConnection & object>(this.sequelize).getConnection({});
  }
}

function exec(connection: SqliteConnection, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    connection.exec(sql, (error) => (error ? reject(error) : resolve()));
  });
}
