/**
 * Row images taken from a write's own statement (PostgreSQL, see
 * postgres.ts; MariaDB deletes, see mariadb.ts; SQLite, see sqlite.ts):
 * while a write runs inside `captureStatement`, the first statement its
 * Sequelize sends is rewritten, and the columns we added are taken out of the
 * driver's result before Sequelize reads it.
 *
 * The hook sits on the dialect's Query class (shared by every Sequelize of
 * the dialect), and does nothing outside a capture of the same Sequelize.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Sequelize } from 'sequelize';
import type { Row } from '../rows';
import type { Rewrite } from './returning';
import { carryInvalidFlag, dialectQueryPrototype } from '../../core/sequelize-internals';

export interface StatementCapture {
  readonly sequelize: Sequelize;
  /** The rewrite of the write's statement, or undefined when it is not of the expected shape. */
  readonly rewrite: (sql: string) => Rewrite | undefined;
  /** The images in the rows; `unknown` when the rows cannot tell them (the write then counts as not captured). */
  readonly take: (plan: Rewrite, rows: Record<string, unknown>[]) => { before: Row[]; after: Row[]; unknown?: boolean };
  /** waiting: no statement yet; captured: images below; unknown: the statement was not rewritten. */
  state: 'waiting' | 'captured' | 'unknown';
  before: Row[];
  after: Row[];
}

const current = new AsyncLocalStorage<StatementCapture>();
const HOOKED = Symbol.for('sequelize-cacheops.statementHook');

type PgResult = { rows?: Record<string, unknown>[]; fields?: { name: string }[] };
type Callback = (error: unknown, result: unknown, ...rest: unknown[]) => void;
interface Connection {
  query(...args: unknown[]): unknown;
  execute?(...args: unknown[]): unknown;
  // node-sqlite3
  serialize?(...args: unknown[]): unknown;
  all?(...args: unknown[]): unknown;
  run?(...args: unknown[]): unknown;
}

function record(capture: StatementCapture, plan: Rewrite, rows: Record<string, unknown>[]): void {
  const images = capture.take(plan, rows);
  capture.before = images.before;
  capture.after = images.after;
  capture.state = images.unknown ? 'unknown' : 'captured';
}

/** An insert's id from its returned rows (the last row's), as the driver gives a bare INSERT; read before record() takes our columns out. */
function insertIdOf(plan: Rewrite, rows: readonly Record<string, unknown>[]): unknown {
  const last = rows[rows.length - 1];
  return plan.insertId !== undefined && last ? last[plan.insertId] : undefined;
}

/** Takes the images out of the driver's answer; returns the answer Sequelize gets. */
function finish(capture: StatementCapture, plan: Rewrite, result: unknown): unknown {
  if (plan.driver === 'mysql-ok') {
    record(capture, plan, [result as Record<string, unknown>]);
    return result;
  }
  if (plan.driver === 'mysql') {
    // mysql2 answers a statement with RETURNING by its rows; Sequelize expects the header of a DELETE.
    const rows = Array.isArray(result) ? result as Record<string, unknown>[] : [];
    const insertId = Number(insertIdOf(plan, rows) ?? 0);
    record(capture, plan, rows);
    return { fieldCount: 0, affectedRows: rows.length, insertId, info: '', serverStatus: 2, warningStatus: 0, changedRows: 0 };
  }
  const pg = result as PgResult;
  record(capture, plan, pg.rows ?? []);
  if (!plan.returnsRows) pg.rows = [];
  if (pg.fields) pg.fields = pg.fields.filter((f) => !f.name.startsWith('__co_'));
  return pg;
}
interface QueryLike { sequelize: Sequelize; connection: Connection }

/** Connections that ran a plan's `prepare` statement (or failed it: not tried again). */
const prepared = new WeakSet<object>();

/** Runs a plan's session statement once on a connection; a failure leaves the session as it is. */
async function prepareOnce(connection: Connection, sql: string): Promise<void> {
  if (prepared.has(connection)) return;
  prepared.add(connection);
  await new Promise<void>((resolve) => {
    connection.query(sql, () => resolve());
  });
}

/** Installs the hook on this Sequelize's dialect (once per Query class). */
export function hookStatements(sequelize: Sequelize): void {
  const proto = dialectQueryPrototype(sequelize);
  if (proto[HOOKED]) return;
  proto[HOOKED] = true;
  const original = proto['run'] as (this: QueryLike, sql: string, parameters?: unknown) => Promise<unknown>;
  proto['run'] = async function run(this: QueryLike, sql: string, parameters?: unknown): Promise<unknown> {
    const capture = current.getStore();
    if (!capture || capture.sequelize !== this.sequelize || capture.state !== 'waiting') return original.call(this, sql, parameters);
    const plan = capture.rewrite(sql);
    if (!plan) {
      capture.state = 'unknown';
      return original.call(this, sql, parameters);
    }
    capture.state = 'unknown'; // until the driver answers
    const connection = this.connection;
    if (plan.prepare) await prepareOnce(connection, plan.prepare);
    if (plan.driver === 'sqlite') return runSqlite.call(this, original, capture, plan, parameters);
    // Only `query` differs; the driver's own state stays on the real connection.
    const wrapped = Object.create(connection) as Connection;
    const intercept = (method: 'query' | 'execute') => (...args: unknown[]) => {
      const last = args.length - 1;
      const callback = args[last] as Callback;
      args[last] = (error: unknown, result: unknown, ...rest: unknown[]) => {
        callback(error, !error && result ? finish(capture, plan, result) : result, ...rest);
      };
      return (connection[method] as (...a: unknown[]) => unknown).apply(connection, args);
    };
    wrapped.query = intercept('query');
    if (typeof connection.execute === 'function') wrapped.execute = intercept('execute');
    this.connection = wrapped;
    try {
      return await original.call(this, plan.sql, parameters);
    } finally {
      this.connection = connection;
      carryInvalidFlag(wrapped, connection);
    }
  };
}

/**
 * node-sqlite3: Sequelize runs an UPDATE (and a bulk DELETE) with
 * `Database#run`, which drops the rows a RETURNING produces; the rewritten
 * statement is run with `Database#all` instead, and Sequelize's callback gets
 * what `run` would have given it (no rows; `changes`, the number of rows the
 * statement changed, which is the number it returned). Every other call on
 * the connection (the PRAGMA Sequelize may send first) goes through as is.
 */
async function runSqlite(this: QueryLike, original: (this: QueryLike, sql: string, parameters?: unknown) => Promise<unknown>, capture: StatementCapture, plan: Rewrite, parameters: unknown): Promise<unknown> {
  const connection = this.connection;
  const call = (method: 'all' | 'run' | 'serialize', args: unknown[]): unknown => (connection[method] as (...a: unknown[]) => unknown).apply(connection, args);
  const intercept = (method: 'all' | 'run') => (...args: unknown[]) => {
    if (args[0] !== plan.sql) return call(method, args);
    const last = args.length - 1;
    const callback = args[last] as (this: unknown, error: unknown, rows?: unknown) => void;
    args[last] = function answered(this: Record<string, unknown>, error: unknown, rows: unknown) {
      const list = Array.isArray(rows) ? rows as Record<string, unknown>[] : [];
      if (!error) {
        const insertId = insertIdOf(plan, list);
        if (insertId !== undefined) this['lastID'] = insertId;
        record(capture, plan, list);
        this['changes'] = list.length;
      }
      callback.call(this, error, method === 'all' && !error ? list : undefined);
    };
    return call('all', args);
  };
  const wrapped = Object.create(connection) as Connection;
  wrapped.serialize = (...args: unknown[]) => call('serialize', args);
  wrapped.all = intercept('all');
  wrapped.run = intercept('run');
  this.connection = wrapped;
  try {
    return await original.call(this, plan.sql, parameters);
  } finally {
    this.connection = connection;
  }
}

/** Runs fn (a write) with its statement captured; returns fn's result and the capture. */
export async function captureStatement<R>(capture: StatementCapture, fn: () => Promise<R>): Promise<R> {
  return current.run(capture, fn);
}
