/**
 * MariaDB (10.0.5+): a DELETE returns the rows it deleted (`DELETE ... RETURNING`),
 * so a delete is one statement with no transaction of ours: the old states
 * are those of the rows the statement removed, read under its own locks.
 *
 * UPDATE has no RETURNING on MariaDB (nor anything on MySQL): updates keep
 * the locking pre-read in a transaction (protocol.ts). An INSERT of one row
 * returns its new state (`INSERT ... RETURNING`, 10.5+); the returned
 * auto-increment column gives Sequelize the insert id it reads the
 * generated key from. Other inserts keep their re-read by key.
 *
 * The returned rows take the place of the driver's usual answer to a DELETE
 * (its affected rows count) before Sequelize sees them (see statement.ts).
 */
import type { Model, ModelStatic } from 'sequelize';
import { balanced, topLevelKeyword } from './sql-scan';
import { columnsOf, newAlias, oldAlias, splitReturning, type Rewrite } from './returning';
import { autoIncrementOf } from '../../core/sequelize-internals';

const backquote = (identifier: string): string => `\`${identifier.replace(/`/g, '``')}\``;

export function rewriteDelete(sql: string, model: ModelStatic<Model>, table: string): Rewrite | undefined {
  const text = sql.trim().replace(/;$/, '');
  const { head, returning } = splitReturning(text);
  const prefix = `DELETE FROM ${table}`;
  if (returning !== undefined || !head.startsWith(prefix) || !/^(?:$|\s+WHERE\s|\s+LIMIT\s)/.test(head.slice(prefix.length)) || !balanced(head)) return undefined;
  const columns = columnsOf(model);
  const mine = columns.map((c, i) => `${table}.${backquote(c.field)} AS ${backquote(oldAlias(i))}`).join(',');
  return { sql: `${head} RETURNING ${mine}`, returnsRows: false, old: true, new: false, columns, driver: 'mysql' };
}

/**
 * A plain insert (not INSERT IGNORE, REPLACE or ON DUPLICATE KEY UPDATE: those may
 * leave or change rows that were there) returning its rows' new states; the
 * auto-increment column stands in for the insert id mysql2 gives a bare INSERT.
 */
export function rewriteInsert(sql: string, model: ModelStatic<Model>, table: string): Rewrite | undefined {
  const text = sql.trim().replace(/;$/, '');
  const { head, returning } = splitReturning(text);
  if (returning !== undefined || !head.startsWith(`INSERT INTO ${table} `) || topLevelKeyword(head, 'ON') >= 0 || !balanced(head)) return undefined;
  const columns = columnsOf(model);
  const autoIncrement = autoIncrementOf(model);
  const index = columns.findIndex((c) => c.attribute === autoIncrement);
  const mine = columns.map((c, i) => `${table}.${backquote(c.field)} AS ${backquote(newAlias(i))}`).join(',');
  return {
    sql: `${head} RETURNING ${mine}`, returnsRows: false, old: false, new: true, columns, driver: 'mysql',
    ...(index >= 0 ? { insertId: newAlias(index) } : {}),
  };
}

/** Whether a server version (`SELECT VERSION()`) is a MariaDB of at least this major.minor.patch. */
function mariadbAtLeast(version: string, major: number, minor: number, patch: number): boolean {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m || !/mariadb/i.test(version)) return false;
  const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return a !== major ? a > major : b !== minor ? b > minor : c >= patch;
}

/** Whether a server version is a MariaDB that has INSERT ... RETURNING (10.5+). */
export const insertReturns = (version: string): boolean => mariadbAtLeast(version, 10, 5, 0);

/** Whether a server version is a MariaDB that has DELETE ... RETURNING (10.0.5+). */
export const deleteReturns = (version: string): boolean => mariadbAtLeast(version, 10, 0, 5);
