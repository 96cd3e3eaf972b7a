/**
 * The private servers of the change-stream tests, for one test file: a
 * PostgreSQL with wal_level=logical (private-postgres.ts) and a MariaDB with
 * the row binlog (private-mariadb.ts), each started with one database made
 * before the file's tests and stopped after them, in serial hooks (serial
 * hooks run in the order they are declared, so a file's own hooks can run
 * before or after these). A server the file does not ask for, or a MariaDB
 * this machine cannot start (mariadbUnavailable), is not started: its flag is
 * false and its tests are to be skipped.
 */
import test from 'ava';
import type { Sequelize } from 'sequelize';
import type { Dialect } from './env';
import { dropSlot, startPrivatePostgres, type PgClient, type PrivatePostgres } from './private-postgres';
import { mariadbUnavailable, startPrivateMariadb, type PrivateMariadb } from './private-mariadb';

export interface StreamDatabases {
  /** The database made on each server. */
  readonly database: string;
  /** Whether the private PostgreSQL is started (asked for). */
  readonly withPostgres: boolean;
  /** Whether the private MariaDB is started (asked for and installed). */
  readonly withMariadb: boolean;
  /** The private PostgreSQL, once started (throws when it is not). */
  readonly pg: PrivatePostgres;
  /** The private MariaDB, once started (throws when it is not). */
  readonly maria: PrivateMariadb;
  /** Where a dialect's database is: its server's port (PostgreSQL's, else MariaDB's) and the database's name. */
  server(dialect: Dialect): { readonly port: number; readonly database: string };
  /** Drops a replication slot on the private PostgreSQL (its walsender ended first). */
  dropSlot(slot: string): Promise<void>;
}

/**
 * Registers the file's hooks that start and stop the servers asked for;
 * `mariadb` is started only when mariadbUnavailable() says it can be.
 */
export function useStreamDatabases(database: string, ask: { readonly postgres?: boolean; readonly mariadb?: boolean }): StreamDatabases {
  const withPostgres = ask.postgres === true;
  const withMariadb = ask.mariadb === true && mariadbUnavailable() === undefined;
  let pg: PrivatePostgres | undefined;
  let maria: PrivateMariadb | undefined;
  let admin: PgClient | undefined;

  test.serial.before(async () => {
    if (withPostgres) {
      pg = await startPrivatePostgres();
      admin = await pg.client();
      await admin.query(`CREATE DATABASE ${database}`);
    }
    if (withMariadb) {
      maria = await startPrivateMariadb();
      const client = await maria.client();
      await client.query(`CREATE DATABASE ${database}`);
      await client.end();
    }
  });

  test.serial.after.always(async () => {
    await admin?.end();
    await pg?.stop();
    await maria?.stop();
  });

  const started = <T>(server: T | undefined, name: string): T => {
    if (server === undefined) throw new Error(`the private ${name} was not started (not asked for, or not available here)`);
    return server;
  };
  return {
    database,
    withPostgres,
    withMariadb,
    get pg() { return started(pg, 'PostgreSQL'); },
    get maria() { return started(maria, 'MariaDB'); },
    server(dialect) {
      return { port: dialect === 'postgres' ? started(pg, 'PostgreSQL').port : started(maria, 'MariaDB').port, database };
    },
    async dropSlot(slot) {
      await dropSlot(started(admin, 'PostgreSQL'), slot);
    },
  };
}

/** PostgreSQL: every model's table sends its rows' old states in the stream (see docs/change-stream.md). */
export async function replicaIdentityFull(sequelize: Sequelize): Promise<void> {
  for (const model of Object.values(sequelize.models)) await sequelize.query(`ALTER TABLE "${model.getTableName() as string}" REPLICA IDENTITY FULL`);
}
