/**
 * PostgreSQL: the old and new states of the rows a write touches, from the
 * write statement itself: one statement, one round trip, no transaction of
 * ours (the statement is atomic).
 *
 *   UPDATE  WITH "__co_old" AS (SELECT <columns> FROM t WHERE <where> FOR UPDATE)
 *           UPDATE t SET <set> FROM "__co_old" WHERE t.<key> = "__co_old".<key>
 *           RETURNING <Sequelize's own>, "__co_old".<columns> (old), t.<columns> (new)
 *   DELETE  DELETE FROM t WHERE <where> RETURNING t.<columns> (old)
 *   INSERT  INSERT ... RETURNING <Sequelize's own>, <columns> (new)
 *
 * The CTE locks the rows the WHERE selects (on a row another transaction
 * changed meanwhile, PostgreSQL re-checks the WHERE against its newest
 * version and returns that one), and the UPDATE changes exactly those rows:
 * the old states are the ones the UPDATE overwrote, and a row committed into
 * the WHERE after the statement's snapshot is left alone, as the bare UPDATE
 * would leave it. Our columns carry aliases of their own (returning.ts),
 * taken out of the result before Sequelize sees it (see statement.ts), so
 * Sequelize gets what the statement it built returns.
 */
import type { Model, ModelStatic } from 'sequelize';
import { balanced, topLevelKeyword } from './sql-scan';
import { columnsOf, newAlias, oldAlias, quote, RETURNING_LIST, splitReturning, type ImageKind, type Rewrite } from './returning';

const OLD = '"__co_old"';

export function rewritePostgres(kind: ImageKind, sql: string, model: ModelStatic<Model>, table: string, keys: readonly string[]): Rewrite | undefined {
  const columns = columnsOf(model);
  const text = sql.trim().replace(/;$/, '');
  const { head, returning } = splitReturning(text);
  if (returning !== undefined && !RETURNING_LIST.test(returning)) return undefined;
  const fieldOf = new Map(columns.map((c) => [c.attribute, c.field]));
  if (kind === 'insert') {
    if (!/^INSERT INTO /i.test(head) || !head.startsWith(`INSERT INTO ${table} `) && !head.startsWith(`INSERT INTO ${table}(`)) return undefined;
    const mine = columns.map((c, i) => `${quote(c.field)} AS ${quote(newAlias(i))}`).join(',');
    return { sql: `${head} RETURNING ${returning ? `${returning},` : ''}${mine};`, returnsRows: returning !== undefined, old: false, new: true, columns, driver: 'pg' };
  }
  if (kind === 'delete') {
    const prefix = `DELETE FROM ${table}`;
    if (!head.startsWith(prefix) || !/^(?:$|\s+WHERE\s)/.test(head.slice(prefix.length)) || !balanced(head)) return undefined;
    const mine = columns.map((c, i) => `${table}.${quote(c.field)} AS ${quote(oldAlias(i))}`).join(',');
    return { sql: `${head} RETURNING ${returning ? `${returning},` : ''}${mine}`, returnsRows: returning !== undefined, old: true, new: false, columns, driver: 'pg' };
  }
  const prefix = `UPDATE ${table} SET `;
  if (!head.startsWith(prefix)) return undefined;
  const whereAt = topLevelKeyword(head, 'WHERE', prefix.length);
  const set = head.slice(prefix.length, whereAt < 0 ? head.length : whereAt);
  const where = whereAt < 0 ? '' : head.slice(whereAt);
  if (!balanced(set) || !balanced(where) || set.trim() === '') return undefined;
  const keyFields = keys.map((k) => fieldOf.get(k));
  if (keyFields.length === 0 || keyFields.some((f) => f === undefined)) return undefined;
  const index = new Map(columns.map((c, i) => [c.field, i]));
  const selected = columns.map((c, i) => `${quote(c.field)} AS ${quote(oldAlias(i))}`).join(',');
  const join = keyFields.map((f) => `${table}.${quote(f!)} = ${OLD}.${quote(oldAlias(index.get(f!)!))}`).join(' AND ');
  const theirs = returning === undefined ? '' : returning === '*' ? `${table}.*,` : `${returning.split(/,\s*(?=")/).map((f) => `${table}.${f}`).join(',')},`;
  const mine = [
    ...columns.map((_, i) => `${OLD}.${quote(oldAlias(i))}`),
    ...columns.map((c, i) => `${table}.${quote(c.field)} AS ${quote(newAlias(i))}`),
  ].join(',');
  return {
    sql: `WITH ${OLD} AS (SELECT ${selected} FROM ${table}${where} FOR UPDATE) UPDATE ${table} SET ${set.trim()} FROM ${OLD} WHERE ${join} RETURNING ${theirs}${mine}`,
    returnsRows: returning !== undefined,
    old: true,
    new: true,
    columns,
    driver: 'pg',
  };
}
