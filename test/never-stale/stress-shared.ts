/**
 * What the stress parent and its worker processes agree on: the worker's
 * configuration, the messages, and how a process opens the shared database
 * (PostgreSQL/MariaDB: the test file's database; SQLite: a file in WAL mode).
 */
import type { Sequelize } from 'sequelize';
import { makeSequelize, type Dialect } from '../helpers/env';
import type { ReadDescription } from './stress-catalog';

export interface SharedDatabase {
  readonly dialect: Dialect;
  /** The test file whose PostgreSQL/MariaDB database is shared (see makeSequelize). */
  readonly testFile: string;
  /** SQLite: the database file. */
  readonly storage?: string;
}

export interface WorkerConfig extends SharedDatabase {
  readonly id: number;
  readonly prefix: string;
  readonly raceProtection: boolean;
  /** Milliseconds each read outside a transaction waits between the database and the store (0: none). */
  readonly readDelayMs: number;
  /** Concurrent loops in the process. */
  readonly loops: number;
  readonly seed: number;
  /** Share of operations that are reads (0..1). */
  readonly readShare: number;
  /** SQLite only: run each write in an IMMEDIATE transaction (see the stress test). */
  readonly sqliteTransactions: boolean;
}

export interface WorkerResult {
  readonly id: number;
  readonly pid: number;
  /** Read operations run (a findAndCountAll is one operation, two cache reads). */
  readonly reads: number;
  readonly writes: number;
  /** Writes the database refused (deadlock, lock timeout, unique conflict), by write and error. */
  readonly failedWrites: Record<string, number>;
  readonly writeKinds: Record<string, number>;
  /** The installation's counters (per cache read). */
  readonly hits: number;
  readonly misses: number;
  readonly stores: number;
  readonly refusedStores: number;
  readonly invalidations: number;
  readonly durationMs: number;
  readonly descriptions: readonly ReadDescription[];
}

export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'go'; readonly until: number }
  | { readonly type: 'result'; readonly result: WorkerResult }
  | { readonly type: 'error'; readonly message: string };

type SqliteConnection = { configure(option: 'busyTimeout', ms: number): void };

/**
 * Opens the shared database. SQLite connections get a busy timeout (Sequelize
 * sets none), so that a writer waits for another process's write lock
 * instead of failing at once.
 */
export async function openShared(db: SharedDatabase): Promise<Sequelize> {
  const sequelize = await makeSequelize(db.dialect, db.testFile, db.storage ? { storage: db.storage } : {});
  if (db.dialect === 'sqlite') {
    const manager = sequelize.connectionManager as unknown as { getConnection(o?: unknown): Promise<SqliteConnection> };
    const original = manager.getConnection.bind(manager);
    const configured = new WeakSet<SqliteConnection>();
    manager.getConnection = async (o?: unknown) => {
      const connection = await original(o);
      if (!configured.has(connection)) {
        connection.configure('busyTimeout', 15_000);
        configured.add(connection);
      }
      return connection;
    };
  }
  return sequelize;
}
