/**
 * What the MariaDB/MySQL consumer asks the server: its connection settings,
 * the start-up checks (log_bin, binlog_format, binlog_row_image, replication
 * rights), a table's columns (the binlog names none), the current position,
 * the binlog bytes kept after a position, and the commit-visibility wait.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsStreamError } from '../core/errors';
import { ask, type MysqlConnection } from './mariadb-dump';
import type { SchemaColumn } from './mariadb-values';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { connectionConfigOf } from '../core/sequelize-internals';

/** mysql2 options from Sequelize's settings, overridden by `changeStream.connection`. */
export function mysqlConfig(core: CacheopsCore, options: NormalizedStreamOptions): Record<string, unknown> {
  const c = connectionConfigOf(core.sequelize);
  const given = options.connection;
  if (typeof given === 'string') return { uri: given };
  return { host: c.host, port: c.port === undefined ? undefined : Number(c.port), user: c.username, password: c.password ?? undefined, database: c.database, ...given };
}

export interface ServerFacts {
  readonly mariadb: boolean;
  /** Whether row images can be read granularly (ROW format, FULL images); otherwise why not. */
  readonly granular: true | string;
}

/**
 * The server settings the start check requires (log_bin on, ROW format: an error
 * otherwise) and the one granular invalidation requires (FULL row images: a
 * warning otherwise), by name; docker-compose.yml is tested against them.
 */
export const BINLOG_REQUIRED_SETTINGS = { log_bin: 'ON', binlog_format: 'ROW' } as const;
export const BINLOG_GRANULAR_SETTINGS = { binlog_row_image: 'FULL' } as const;

/**
 * log_bin must be on and the format ROW (an error otherwise: statements cannot be
 * attributed to rows); a row image other than FULL lacks the old row's columns:
 * model-wide, with a warning. The rights to read the binlog are checked by name.
 */
export async function checkServer(connection: MysqlConnection, log: (message: string) => void): Promise<ServerFacts> {
  const [v] = await ask(connection, 'SELECT @@log_bin AS log_bin, @@binlog_format AS format, @@binlog_row_image AS image, @@version AS version');
  const missing: string[] = [];
  if ((Number(v?.['log_bin']) === 1 ? 'ON' : 'OFF') !== BINLOG_REQUIRED_SETTINGS.log_bin) missing.push('log_bin is OFF: start the server with log_bin (my.cnf: log_bin = mysql-bin, server_id = 1), a restart');
  const format = String(v?.['format']);
  if (format !== BINLOG_REQUIRED_SETTINGS.binlog_format) missing.push(`binlog_format is ${format}: SET GLOBAL binlog_format = 'ROW' (and binlog_format = ROW in my.cnf)`);
  const grants = (await ask(connection, 'SHOW GRANTS')).map((r) => String(Object.values(r)[0])).join('\n').toUpperCase();
  const all = /GRANT ALL PRIVILEGES ON \*\.\*/.test(grants);
  const rights: string[] = [];
  if (!all && !/REPLICATION (SLAVE|REPLICA)|BINLOG REPLAY|REPLICATION SLAVE ADMIN/.test(grants)) rights.push('REPLICATION SLAVE');
  if (!all && !/REPLICATION CLIENT|BINLOG MONITOR/.test(grants)) rights.push('REPLICATION CLIENT');
  if (rights.length > 0) missing.push(`the user lacks ${rights.join(' and ')}: GRANT ${rights.join(', ')} ON *.* TO <the application's user>`);
  if (missing.length > 0) throw new CacheopsStreamError(`change stream: the server cannot stream changes: ${missing.join('; ')}`);
  const mariadb = /mariadb/i.test(String(v?.['version']));
  const image = String(v?.['image']);
  if (image !== BINLOG_GRANULAR_SETTINGS.binlog_row_image) {
    const why = `binlog_row_image is ${image}`;
    log(`change stream: ${why}: row images lack columns, so every change invalidates its whole model. ` +
      "For granular invalidation: SET GLOBAL binlog_row_image = 'FULL' (and binlog_row_image = FULL in my.cnf)");
    return { mariadb, granular: why };
  }
  return { mariadb, granular: true };
}

/** The table's columns in ordinal order (re-read after DDL or a changed TABLE_MAP). */
export async function tableColumns(connection: MysqlConnection, schema: string, table: string): Promise<SchemaColumn[]> {
  const rows = await ask(connection,
    `SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type, CHARACTER_SET_NAME AS charset, COLUMN_KEY AS \`key\`
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, [schema, table]);
  return rows.map((r) => {
    const type = String(r['type']);
    const enumMatch = /^enum\((.*)\)$/i.exec(type);
    return {
      name: String(r['name']),
      unsigned: /unsigned/i.test(type),
      charset: r['charset'] === null || r['charset'] === undefined ? undefined : String(r['charset']).toLowerCase(),
      enumValues: enumMatch ? [...enumMatch[1]!.matchAll(/'((?:[^']|'')*)'/g)].map((m) => m[1]!.replace(/''/g, "'")) : undefined,
      primary: String(r['key']) === 'PRI',
    };
  });
}

export interface ServerPosition {
  readonly gtid: string | undefined;
  readonly file: string;
  readonly position: number;
}

/** Where the binlog ends now: MariaDB's GTID state, and the file and position. */
export async function currentPosition(connection: MysqlConnection, mariadb: boolean): Promise<ServerPosition> {
  const [status] = await ask(connection, mariadb ? 'SHOW BINLOG STATUS' : 'SHOW MASTER STATUS').catch(() => ask(connection, 'SHOW MASTER STATUS'));
  const gtid = mariadb ? String((await ask(connection, 'SELECT @@gtid_binlog_pos AS g'))[0]?.['g'] ?? '') : undefined;
  return { gtid, file: String(status?.['File']), position: Number(status?.['Position']) };
}

/** Bytes of binlog the server keeps from `file` at `position` on (null: the file is gone). */
export async function retainedBytes(connection: MysqlConnection, file: string, position: number): Promise<number | null> {
  const logs = await ask(connection, 'SHOW BINARY LOGS');
  const names = logs.map((l) => String(l['Log_name']));
  const from = names.indexOf(file);
  if (from < 0) return null;
  let bytes = -position;
  for (const log of logs.slice(from)) bytes += Number(log['File_size']);
  return Math.max(0, bytes);
}

const quote = (name: string): string => `\`${name.replace(/`/g, '``')}\``;

/**
 * Waits until a transaction written to the binlog is committed in InnoDB. The
 * binlog is written before the storage engine's commit, and the writer keeps
 * its row locks until that commit: a shared lock on one of its rows (by
 * primary key) is granted only after it, when the change is visible to every
 * new snapshot. A statement that replaced the table (TRUNCATE, DDL) holds its
 * exclusive metadata lock until it ends: any read of the table waits for it.
 * Returns false when the lock was not granted within the server's lock wait
 * timeout (a later transaction holds the row): the change is then almost
 * surely visible, and the caller says so.
 */
export async function untilCommitted(connection: MysqlConnection, schema: string, table: string, key: Readonly<Record<string, unknown>> | undefined): Promise<boolean> {
  const name = `${quote(schema)}.${quote(table)}`;
  try {
    if (key === undefined) {
      await ask(connection, `SELECT 1 FROM ${name} LIMIT 0`);
    } else {
      const columns = Object.keys(key);
      await ask(connection, `SELECT 1 FROM ${name} WHERE ${columns.map((c) => `${quote(c)} = ?`).join(' AND ')} LOCK IN SHARE MODE`, columns.map((c) => key[c]));
    }
    return true;
  } catch (error) {
    const errno = (error as { errno?: number }).errno;
    if (errno === 1146) return true; // the table is gone (dropped): nothing left to see
    if (errno === 1205 || errno === 1213) return false; // lock wait timeout, deadlock
    throw error;
  }
}

/** One row (or, without a key, one table) whose transaction's InnoDB commit a visibility wait waits for. */
export interface CommitTarget {
  readonly schema: string;
  readonly table: string;
  readonly key: Readonly<Record<string, unknown>> | undefined;
}

/** Rows asked for in one statement: far below max_allowed_packet with any key. */
const ROWS_PER_STATEMENT = 200;

/**
 * untilCommitted for a batch of transactions at once: one shared-lock SELECT
 * per table and key shape (`WHERE (k) IN ((?), ...)`), granted only once every
 * one of those rows' writers committed, in place of one round trip per
 * transaction. A statement whose lock is not granted (a later transaction holds
 * one of its rows, or a deadlock with a writer) is asked again row by row, so
 * the targets it returns (not seen committed within the lock wait timeout)
 * are exactly those untilCommitted would have returned.
 */
export async function untilAllCommitted(connection: MysqlConnection, targets: readonly CommitTarget[]): Promise<CommitTarget[]> {
  const groups = new Map<string, CommitTarget[]>();
  for (const target of targets) {
    const shape = `${target.schema}\u0000${target.table}\u0000${target.key === undefined ? '' : Object.keys(target.key).join('\u0000')}`;
    const group = groups.get(shape);
    if (group) group.push(target);
    else groups.set(shape, [target]);
  }
  const late: CommitTarget[] = [];
  for (const group of groups.values()) {
    const first = group[0]!;
    if (first.key === undefined || group.length === 1) {
      // Without a key the wait is on the table's metadata lock: one covers the whole group.
      if (!(await untilCommitted(connection, first.schema, first.table, first.key))) late.push(...group);
      continue;
    }
    for (let i = 0; i < group.length; i += ROWS_PER_STATEMENT) {
      const chunk = group.slice(i, i + ROWS_PER_STATEMENT);
      if (await chunkCommitted(connection, first.schema, first.table, chunk)) continue;
      for (const target of chunk) if (!(await untilCommitted(connection, target.schema, target.table, target.key))) late.push(target);
    }
  }
  return late;
}

async function chunkCommitted(connection: MysqlConnection, schema: string, table: string, chunk: readonly CommitTarget[]): Promise<boolean> {
  const columns = Object.keys(chunk[0]!.key!);
  const tuple = `(${columns.map(() => '?').join(', ')})`;
  const sql = `SELECT 1 FROM ${quote(schema)}.${quote(table)} WHERE (${columns.map(quote).join(', ')}) IN (${chunk.map(() => tuple).join(', ')}) LOCK IN SHARE MODE`;
  try {
    await ask(connection, sql, chunk.flatMap((t) => columns.map((c) => t.key![c])));
    return true;
  } catch (error) {
    const errno = (error as { errno?: number }).errno;
    if (errno === 1146) return true; // the table is gone (dropped): nothing left to see
    if (errno === 1205 || errno === 1213) return false; // lock wait timeout, deadlock: row by row
    throw error;
  }
}
