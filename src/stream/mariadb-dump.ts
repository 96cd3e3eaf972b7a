/**
 * The replica connection: a mysql2 connection (the driver Sequelize's mysql
 * and mariadb dialects use here, loaded lazily) that announces itself as a
 * replica and runs COM_BINLOG_DUMP, handing each raw event (checksum removed)
 * to a callback. mysql2's own binlog command parses only a few event types and
 * hides the bytes, so the command is our own, on mysql2's command queue.
 */
import { dirname, join } from 'node:path';
import { CacheopsStreamError } from '../core/errors';

export interface MysqlConnection {
  query(sql: string, params: readonly unknown[], callback: (error: Error | null, rows: unknown) => void): void;
  addCommand(command: unknown): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
  pause(): void;
  resume(): void;
  end(): void;
  destroy(): void;
  readonly threadId: number | null;
}

interface Mysql2 {
  createConnection(config: Record<string, unknown>): MysqlConnection;
}

interface RawPacket {
  readonly buffer: Buffer;
  readonly offset: number;
  readonly end: number;
  isEOF(): boolean;
}

function load<T>(id: string): T {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(id) as T;
  } catch (error) {
    throw new CacheopsStreamError('change stream: the MariaDB/MySQL change stream needs the mysql2 package (npm install mysql2)', { cause: error });
  }
}

/** A connected mysql2 connection of its own (not a pool's), from Sequelize's settings or `connection`. */
export async function connectMysql(config: Record<string, unknown>): Promise<MysqlConnection> {
  const mysql = load<Mysql2>('mysql2');
  const connection = mysql.createConnection({ ...config, supportBigNumbers: true, bigNumberStrings: true, dateStrings: true });
  await new Promise<void>((resolve, reject) => {
    connection.query('SELECT 1', [], (error) => (error ? reject(error) : resolve()));
  });
  return connection;
}

export function ask<R = Record<string, unknown>>(connection: MysqlConnection, sql: string, params: readonly unknown[] = []): Promise<R[]> {
  return new Promise((resolve, reject) => {
    connection.query(sql, params, (error, rows) => (error ? reject(error) : resolve(rows as R[])));
  });
}

/** Where the dump starts: a MariaDB GTID state (`domain-server-seq,...`), or a file and position. */
export type DumpStart = { readonly gtid: string } | { readonly file: string; readonly position: number };

export interface DumpHandlers {
  event(raw: Buffer): void;
  /** The server refused or ended the dump (error 1236: the position is gone). */
  error(error: Error & { errno?: number }): void;
}

/**
 * Starts streaming on a fresh connection (it is the dump's from then on).
 * `heartbeatMs`: the server sends a heartbeat event after that much silence.
 */
export async function startDump(connection: MysqlConnection, start: DumpStart, serverId: number, heartbeatMs: number, handlers: DumpHandlers): Promise<{ checksum: boolean }> {
  const [variables] = await ask(connection, 'SELECT @@global.binlog_checksum AS checksum');
  const checksum = String(variables?.['checksum'] ?? 'NONE').toUpperCase() !== 'NONE';
  // A replica that does not say it reads checksums is refused by a server that writes them.
  await ask(connection, 'SET @master_binlog_checksum = @@global.binlog_checksum');
  await ask(connection, 'SET @master_heartbeat_period = ?', [heartbeatMs * 1_000_000]);
  if ('gtid' in start) {
    // MariaDB: GTID events instead of BEGIN, and the start given as a GTID state.
    await ask(connection, 'SET @mariadb_slave_capability = 4');
    await ask(connection, 'SET @slave_connect_state = ?', [start.gtid]);
    await ask(connection, 'SET @slave_gtid_strict_mode = 0');
    await ask(connection, 'SET @slave_gtid_ignore_duplicates = 0');
  }
  // The package exports no subpaths: its internals are reached from its own directory.
  const root = dirname(require.resolve('mysql2'));
  const packets = load<{ BinlogDump: new (opts: Record<string, unknown>) => { toPacket(): unknown } }>(join(root, 'lib', 'packets', 'index.js'));
  const Command = load<new () => object>(join(root, 'lib', 'commands', 'command.js'));
  const file = 'gtid' in start ? '' : start.file;
  const position = 'gtid' in start ? 4 : start.position;

  class Dump extends (Command as new () => { emit(e: string, ...a: unknown[]): boolean; on(e: string, f: (...a: never[]) => void): unknown }) {
    start(_packet: unknown, conn: { writePacket(p: unknown): void }): unknown {
      conn.writePacket(new packets.BinlogDump({ filename: file, binlogPos: position, serverId, flags: 0 }).toPacket());
      return Dump.prototype.data;
    }

    data(packet: RawPacket): unknown {
      if (packet.isEOF()) {
        handlers.error(new Error('the server ended the binlog dump'));
        return null;
      }
      // 0x00, then the event; its last 4 bytes are the CRC32 when the server writes checksums.
      const raw = packet.buffer.subarray(packet.offset + 1, packet.end - (checksum ? 4 : 0));
      handlers.event(raw);
      return Dump.prototype.data;
    }
  }
  const dump = new Dump();
  dump.on('error', (error: Error) => handlers.error(error));
  connection.addCommand(dump);
  return { checksum };
}
