/**
 * SQLite (3.35+): the old and new states of the rows a write touches, from
 * the write statement itself, one statement and no transaction of ours:
 *
 *   UPDATE  UPDATE t SET <set> WHERE <where>
 *           RETURNING t.<columns> (new),
 *                     (SELECT <column> FROM temp.<old> WHERE rowid = t.rowid) (old, per column),
 *                     (whether the trigger below exists) (ok)
 *   DELETE  DELETE FROM t WHERE <where> RETURNING t.<columns> (old)
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
 * Values come back in the storage classes SQLite holds (a TEXT date, 0/1 for
 * a boolean); they are parsed as Sequelize parses a SELECT of the same table
 * (by the declared column types, `PRAGMA table_info`), and built into
 * instances the same way, so the states are those a re-read would give.
 */
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import type { Row } from '../rows';
import { balanced, topLevelKeyword } from './sql-scan';
import { columnsOf, oldAlias, type Rewrite } from './postgres';

const newAlias = (i: number): string => `__co_n${i}`;
const OK = '__co_ok';
const dq = (identifier: string): string => `"${identifier.replace(/"/g, '""')}"`;

/** Our temp table and trigger for a table (by its unquoted name). */
export function tempNames(tableName: string): { table: string; trigger: string } {
  return { table: `__co_old_${tableName}`, trigger: `__co_before_update_${tableName}` };
}

/** SQL creating the temp table of old states and the trigger that fills it (one `exec`, once per connection). */
export function installSql(model: ModelStatic<Model>, quotedTable: string, tableName: string): string {
  const columns = columnsOf(model);
  const names = tempNames(tableName);
  // No declared types: the values keep the storage class they have in the table.
  return [
    `CREATE TEMP TABLE IF NOT EXISTS temp.${dq(names.table)} ("__co_rowid" INTEGER PRIMARY KEY, ${columns.map((c) => dq(c.field)).join(', ')});`,
    // Not INSERT OR REPLACE: the conflict clause of the statement that fires a trigger (an
    // upsert, INSERT OR IGNORE) overrides those in its body; a DELETE first leaves nothing to conflict with.
    `CREATE TEMP TRIGGER IF NOT EXISTS ${dq(names.trigger)} BEFORE UPDATE ON ${quotedTable} BEGIN `
      + `DELETE FROM temp.${dq(names.table)} WHERE "__co_rowid" = OLD.rowid; `
      + `INSERT INTO temp.${dq(names.table)} ("__co_rowid", ${columns.map((c) => dq(c.field)).join(', ')}) `
      + `VALUES (OLD.rowid, ${columns.map((c) => `OLD.${dq(c.field)}`).join(', ')}); END;`,
  ].join('\n');
}

/** Empties the temp table (its entries are never read again; this only bounds its size). */
export function cleanupSql(tableName: string): string {
  return `DELETE FROM temp.${dq(tempNames(tableName).table)};`;
}

export function rewriteSqlite(kind: 'update' | 'delete', sql: string, model: ModelStatic<Model>, quotedTable: string, tableName: string): Rewrite | undefined {
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
  if (!text.startsWith(`UPDATE ${quotedTable} SET `)) return undefined;
  const names = tempNames(tableName);
  const mine = [
    ...columns.map((c, i) => `${col(c)} AS ${dq(newAlias(i))}`),
    ...columns.map((c, i) => `(SELECT ${dq(c.field)} FROM temp.${dq(names.table)} WHERE "__co_rowid" = ${quotedTable}.rowid) AS ${dq(oldAlias(i))}`),
    `(SELECT count(*) FROM temp.sqlite_master WHERE type = 'trigger' AND name = '${names.trigger.replace(/'/g, "''")}') AS ${dq(OK)}`,
  ].join(',');
  return { sql: `${text} RETURNING ${mine}`, returnsRows: false, old: true, new: true, columns, driver: 'sqlite' };
}

/** Declared column types by column name, as `PRAGMA table_info` gives them. */
export type ColumnTypes = Readonly<Record<string, string>>;

interface SqliteQueryClass { prototype: { applyParsers(this: { sequelize: Sequelize }, type: string, value: unknown): unknown } }

/**
 * Takes the rows a rewritten statement returned and makes them row states:
 * each value parsed by its column's declared type, as the dialect's Query
 * parses a SELECT, then built into an instance of the model as findAll
 * builds one. `unknown` when the trigger was missing (old states unknown).
 */
export function takeSqliteImages(
  plan: Rewrite, rows: Record<string, unknown>[], model: ModelStatic<Model>, types: ColumnTypes,
): { before: Row[]; after: Row[]; unknown: boolean } {
  const sequelize = model.sequelize!;
  const Query = (sequelize as unknown as { dialect: { Query: SqliteQueryClass } }).dialect.Query;
  const context = { sequelize };
  const state = (row: Record<string, unknown>, alias: (i: number) => string): Row => {
    const values: Row = {};
    plan.columns.forEach((c, i) => {
      const raw = row[alias(i)];
      const type = types[c.field];
      values[c.attribute] = raw === null || raw === undefined || type === undefined ? raw : Query.prototype.applyParsers.call(context, type, raw);
    });
    return { ...(model.build(values, { raw: true, isNewRecord: false }).dataValues as Row) };
  };
  const before: Row[] = [];
  const after: Row[] = [];
  let unknown = false;
  for (const row of rows) {
    if (plan.new && row[OK] !== 1) unknown = true;
    if (plan.old) before.push(state(row, oldAlias));
    if (plan.new) after.push(state(row, newAlias));
  }
  return { before, after, unknown };
}
