/**
 * SQLite (3.35+): the old and new states of the rows a write touches, from
 * the write statement itself, one statement and no transaction of ours:
 *
 *   UPDATE  UPDATE t SET <set> WHERE <where>
 *           RETURNING t.<columns> (new),
 *                     (SELECT <old state> FROM temp.<old> WHERE rowid = t.rowid) (old),
 *                     (whether the trigger below exists) (ok)
 *   DELETE  DELETE FROM t WHERE <where> RETURNING t.<columns> (old)
 *   INSERT  INSERT INTO t ... RETURNING rowid, t.<columns> (new): the rowid is
 *           the insert id Sequelize reads (node-sqlite3 gives it only to `run`)
 *
 * RETURNING sees only the new row of an UPDATE, so a TEMP trigger
 * (`BEFORE UPDATE`, created once per connection and table, see installSql)
 * copies each row's old state into a temp table keyed by the row's rowid,
 * just before the row is changed; the statement's RETURNING looks it up
 * there. All of it is one statement: SQLite runs it under its write lock, and
 * every entry it reads was written by the same statement a moment earlier
 * (an entry left by an earlier statement is replaced first, since the
 * trigger fires for every row RETURNING reports). Two conditions make that
 * hold: the rowid does not change (an update that sets a primary key column
 * keeps the pre-read protocol), and the trigger exists. A dropped and
 * recreated table loses its triggers; the `ok` column says whether it was
 * there, and without it the write invalidates its whole model.
 *
 * The old state is one text per row, so that RETURNING looks it up once
 * (one lookup per column cost more than the rest of the statement): every
 * column of the table (`PRAGMA table_info`), named, with an exact literal of
 * its value, joined by commas (see encodeOld; neither holds a comma). The
 * new state comes as columns of their own.
 *
 * Values come back in the storage classes SQLite holds (a TEXT date, 0/1 for
 * a boolean); they are parsed as Sequelize parses a SELECT of the same table
 * (by the declared column types, `PRAGMA table_info`), and given the values
 * an instance built from them holds (rows.ts asBuilt), so the states are
 * those a re-read would give.
 */
import type { Model, ModelStatic } from 'sequelize';
import { asBuilt, type Row } from '../rows';
import { balanced, topLevelKeyword } from './sql-scan';
import { columnsOf, oldAlias, type Column, type Rewrite } from './returning';
import { sqliteParserOf } from '../../core/sequelize-internals';

const newAlias = (i: number): string => `__co_n${i}`;
const OK = '__co_ok';
const OLD_STATE = '__co_old';
const ROWID = '__co_rowid';
const dq = (identifier: string): string => `"${identifier.replace(/"/g, '""')}"`;

/** Our temp table and trigger for a table (by its unquoted name). */
export function tempNames(tableName: string): { table: string; trigger: string } {
  return { table: `__co_old_${tableName}`, trigger: `__co_before_update_${tableName}` };
}

/** A table's columns, in `PRAGMA table_info` order, with their declared types. */
export interface TableColumns {
  readonly fields: readonly string[];
  readonly types: ReadonlyMap<string, string>;
  /**
   * The name that reaches the table's rowid: `rowid`, or `oid` / `_rowid_` when a
   * column of the table takes that name; undefined when all three are columns or
   * the table has no rowid (WITHOUT ROWID). Updates and inserts then keep the
   * pre-read and re-read.
   */
  readonly rowid: string | undefined;
}

/** The names SQLite gives the rowid, in the order they are tried. */
export const ROWID_NAMES = ['rowid', 'oid', '_rowid_'] as const;

/** The first rowid name that no column of the table shadows (SQLite matches them case-insensitively). */
export function unshadowedRowid(fields: readonly string[]): string | undefined {
  const taken = new Set(fields.map((f) => f.toLowerCase()));
  return ROWID_NAMES.find((n) => !taken.has(n));
}

/**
 * One column's value as an exact literal without a comma, after the hex of
 * the column's name and a colon: TEXT as `T` and the hex of its UTF-8 bytes
 * (quote() would cut it at a NUL character), anything else as quote() writes
 * it (NULL, an integer, a REAL with the digits that give it back exactly, a
 * BLOB as X'..'). decodeOld reads it back by name, so a trigger made for
 * another shape of the table can never shift a value into the wrong column.
 */
const encodeOld = (field: string): string =>
  `'${Buffer.from(field, 'utf8').toString('hex')}:' || iif(typeof(OLD.${dq(field)}) = 'text', 'T' || hex(OLD.${dq(field)}), quote(OLD.${dq(field)}))`;

/** SQL creating the temp table of old states and the trigger that fills it (one `exec`, once per connection). */
export function installSql(quotedTable: string, tableName: string, columns: TableColumns & { readonly rowid: string }): string {
  const names = tempNames(tableName);
  const rowid = `OLD.${columns.rowid}`;
  const state = columns.fields.map(encodeOld).join(` || ',' || `);
  return [
    `CREATE TEMP TABLE IF NOT EXISTS temp.${dq(names.table)} ("__co_rowid" INTEGER PRIMARY KEY, "__co_state" TEXT);`,
    // Made anew each time (after DDL through this Sequelize, or a state that did not decode):
    // a trigger of an earlier shape of the table would leave out the columns added since.
    `DROP TRIGGER IF EXISTS temp.${dq(names.trigger)};`,
    // Not INSERT OR REPLACE: the conflict clause of the statement that fires a trigger (an
    // upsert, INSERT OR IGNORE) overrides those in its body; a DELETE first leaves nothing to conflict with.
    `CREATE TEMP TRIGGER ${dq(names.trigger)} BEFORE UPDATE ON ${quotedTable} BEGIN `
      + `DELETE FROM temp.${dq(names.table)} WHERE "__co_rowid" = ${rowid}; `
      + `INSERT INTO temp.${dq(names.table)} ("__co_rowid", "__co_state") VALUES (${rowid}, ${state}); END;`,
  ].join('\n');
}

/** The values of an old state written by the trigger (see encodeOld), by column name. */
export function decodeOld(state: string): Map<string, unknown> {
  const values = new Map<string, unknown>();
  for (const part of state.split(',')) {
    const colon = part.indexOf(':');
    const literal = part.slice(colon + 1);
    const value = literal === 'NULL' ? null
      : literal.startsWith('T') ? Buffer.from(literal.slice(1), 'hex').toString('utf8')
        : literal.startsWith("X'") ? Buffer.from(literal.slice(2, -1), 'hex')
          : Number(literal);
    values.set(Buffer.from(part.slice(0, colon), 'hex').toString('utf8'), value);
  }
  return values;
}

/** Empties the temp table (its entries are never read again; this only bounds its size). */
export function cleanupSql(tableName: string): string {
  return `DELETE FROM temp.${dq(tempNames(tableName).table)};`;
}

export function rewriteSqlite(
  kind: 'update' | 'delete' | 'insert', sql: string, model: ModelStatic<Model>, quotedTable: string, tableName: string, rowid: string | undefined,
): Rewrite | undefined {
  const columns = columnsOf(model);
  const text = sql.trim().replace(/;$/, '');
  if (topLevelKeyword(text, 'RETURNING') >= 0 || !balanced(text)) return undefined;
  const col = (c: { field: string }): string => `${quotedTable}.${dq(c.field)}`;
  if (kind === 'delete') {
    const prefix = `DELETE FROM ${quotedTable}`;
    if (!text.startsWith(prefix) || !/^(?:$|\s+WHERE\s)/.test(text.slice(prefix.length))) return undefined;
    const mine = columns.map((c, i) => `${col(c)} AS ${dq(oldAlias(i))}`).join(',');
    return { sql: `${text} RETURNING ${mine}`, returnsRows: false, old: true, new: false, columns, driver: 'sqlite' };
  }
  if (kind === 'insert') {
    // Not INSERT OR REPLACE (it deletes the rows it conflicts with) nor ON CONFLICT (an upsert):
    // only a plain insert changes no row that was there.
    if (rowid === undefined || !text.startsWith(`INSERT INTO ${quotedTable} `) || topLevelKeyword(text, 'ON') >= 0) return undefined;
    const mine = [`${quotedTable}.${rowid} AS ${dq(ROWID)}`, ...columns.map((c, i) => `${col(c)} AS ${dq(newAlias(i))}`)].join(',');
    return { sql: `${text} RETURNING ${mine}`, returnsRows: false, old: false, new: true, columns, driver: 'sqlite', insertId: ROWID };
  }
  if (rowid === undefined || !text.startsWith(`UPDATE ${quotedTable} SET `)) return undefined;
  const names = tempNames(tableName);
  const mine = [
    ...columns.map((c, i) => `${col(c)} AS ${dq(newAlias(i))}`),
    `(SELECT "__co_state" FROM temp.${dq(names.table)} WHERE "__co_rowid" = ${quotedTable}.${rowid}) AS ${dq(OLD_STATE)}`,
    `(SELECT count(*) FROM temp.sqlite_master WHERE type = 'trigger' AND name = '${names.trigger.replace(/'/g, "''")}') AS ${dq(OK)}`,
  ].join(',');
  return { sql: `${text} RETURNING ${mine}`, returnsRows: false, old: true, new: true, columns, driver: 'sqlite' };
}

/**
 * Takes the rows a rewritten statement returned and makes them row states:
 * each value parsed by its column's declared type, as the dialect's Query
 * parses a SELECT, then built into an instance of the model as findAll
 * builds one. `unknown` when the trigger was missing (old states unknown).
 */
export function takeSqliteImages(
  plan: Rewrite, rows: Record<string, unknown>[], model: ModelStatic<Model>, table: TableColumns,
): { before: Row[]; after: Row[]; unknown: boolean } {
  const sequelize = model.sequelize!;
  const parse = sqliteParserOf(sequelize);
  const state = (raw: (c: Column, i: number) => unknown): Row => {
    const values: Row = {};
    plan.columns.forEach((c, i) => {
      const value = raw(c, i);
      const type = table.types.get(c.field);
      values[c.attribute] = value === null || value === undefined || type === undefined ? value : parse(type, value);
    });
    return asBuilt(model, values);
  };
  const before: Row[] = [];
  const after: Row[] = [];
  let unknown = false;
  for (const row of rows) {
    if (!plan.old) {
      after.push(state((_c, i) => row[newAlias(i)]));
    } else if (plan.new) {
      const old = row[OLD_STATE];
      if (row[OK] !== 1 || typeof old !== 'string') {
        unknown = true;
        continue;
      }
      const values = decodeOld(old);
      // Written by a trigger made before a column of the model was added to the table.
      if (plan.columns.some((c) => !values.has(c.field))) {
        unknown = true;
        continue;
      }
      before.push(state((c) => values.get(c.field)));
      after.push(state((_c, i) => row[newAlias(i)]));
    } else {
      before.push(state((_c, i) => row[oldAlias(i)]));
    }
  }
  return { before, after, unknown };
}
