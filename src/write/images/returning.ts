/**
 * Row images from a statement's RETURNING clause, shared by every dialect
 * that has one (postgres.ts, mariadb.ts, sqlite.ts): the model's stored
 * columns, our aliases for the old ("__co_o<i>") and new ("__co_n<i>")
 * state of each, the RETURNING list Sequelize wrote split off the
 * statement, and the images taken back out of the returned rows before
 * Sequelize sees them (see statement.ts). Each dialect's file says how it
 * rewrites its statements.
 *
 * A statement of another shape than the one Sequelize generates is not
 * rewritten (undefined): the write then invalidates its whole model.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { Row } from '../rows';
import { topLevelKeyword } from './sql-scan';

export type ImageKind = 'update' | 'delete' | 'insert';

/** A rewritten statement and how to read our columns back from its rows. */
export interface Rewrite {
  readonly sql: string;
  /** Whether Sequelize's statement returned rows itself (else its rows are emptied again). */
  readonly returnsRows: boolean;
  readonly old: boolean;
  readonly new: boolean;
  readonly columns: readonly Column[];
  /**
   * How the driver hands back rows: pg's result object, mysql2's array of rows, or
   * node-sqlite3's (see sqlite.ts); `mysql-ok`: the statement is not changed and
   * mysql2's OK packet (its header: affected rows, session state) is read as one row.
   */
  readonly driver: 'pg' | 'mysql' | 'sqlite' | 'mysql-ok';
  /** Sent once on each connection before its first such statement (a session setting the plan needs). */
  readonly prepare?: string;
  /** An insert: the returned column holding the insert id the driver would have given (node-sqlite3's lastID, mysql2's insertId). */
  readonly insertId?: string;
}

export interface Column {
  readonly attribute: string;
  readonly field: string;
}

export const quote = (identifier: string): string => `"${identifier.replace(/"/g, '""')}"`;
export const oldAlias = (i: number): string => `__co_o${i}`;
export const newAlias = (i: number): string => `__co_n${i}`;

/** The model's stored columns (virtual attributes have none). */
export function columnsOf(model: ModelStatic<Model>): Column[] {
  const attrs = model.getAttributes() as Record<string, { field?: string; type?: { key?: string } }>;
  return Object.entries(attrs)
    .filter(([, a]) => a.type?.key !== 'VIRTUAL')
    .map(([attribute, a]) => ({ attribute, field: a.field ?? attribute }));
}

/** ` RETURNING *` or ` RETURNING "a","b"` at the end of a statement, as Sequelize writes it. */
export function splitReturning(sql: string): { head: string; returning: string | undefined } {
  const at = topLevelKeyword(sql, 'RETURNING');
  if (at < 0) return { head: sql, returning: undefined };
  return { head: sql.slice(0, at), returning: sql.slice(at + ' RETURNING '.length).trim() };
}

export const RETURNING_LIST = /^(?:\*|"(?:[^"]|"")+"(?:,\s*"(?:[^"]|"")+")*)$/;

/** Takes our columns out of the rows (in place) and returns them as attribute-keyed states. */
export function takeImages(plan: Rewrite, rows: Record<string, unknown>[]): { before: Row[]; after: Row[] } {
  const before: Row[] = [];
  const after: Row[] = [];
  for (const row of rows) {
    if (plan.old) {
      const image: Row = {};
      plan.columns.forEach((c, i) => { image[c.attribute] = row[oldAlias(i)]; delete row[oldAlias(i)]; });
      before.push(image);
    }
    if (plan.new) {
      const image: Row = {};
      plan.columns.forEach((c, i) => { image[c.attribute] = row[newAlias(i)]; delete row[newAlias(i)]; });
      after.push(image);
    }
  }
  return { before, after };
}
