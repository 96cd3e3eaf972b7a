/**
 * What the stress parent and its worker processes agree on: the worker's
 * configuration, the messages, and how a process opens the shared database
 * (PostgreSQL/MariaDB: the test file's database; SQLite: a file in WAL mode).
 */
import { Sequelize } from 'sequelize';
import { makeSequelize, type Dialect } from '../helpers/env';
import type { ReadDescription } from './stress-catalog';

export interface SharedDatabase {
  readonly dialect: Dialect;
  /** The test file whose PostgreSQL/MariaDB database is shared (see makeSequelize). */
  readonly testFile: string;
  /** SQLite: the database file. */
  readonly storage?: string;
  /** A private server instead (PostgreSQL with wal_level=logical, MariaDB with the row binlog): its port and database. */
  readonly server?: { readonly port: number; readonly database: string };
}

/** `writes: 'stream'` in every worker (stress-stream-writes.test.ts). */
export interface StreamWorkerConfig {
  /** The `changeStream` option every worker installs. */
  readonly changeStream: Readonly<Record<string, unknown>>;
  /**
   * Test-only: a write's wait for the stream resolves at once, before the consumer invalidated
   * its transaction (STRESS_STREAM_NO_WAIT=1), to see what the check finds without it.
   */
  readonly skipWait?: boolean;
}

/** A worker's stream figures: its role when it stopped, its writes' waits by outcome. */
export interface StreamWorkerResult {
  readonly role: string;
  readonly done: number;
  readonly timeout: number;
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
  /**
   * The near cache on, and the sampler at rate 1: every hit is re-run against the database.
   * After the run, once every worker has stopped writing, each replays its reads (see stress-worker.ts).
   */
  readonly near: boolean;
  readonly stream?: StreamWorkerConfig;
}

/** The sampler's findings in one worker (near runs only). */
export interface SamplerResult {
  readonly checks: number;
  /** Stale results while writes were running: hits a concurrent write had already overtaken. */
  readonly stale: number;
  /** Their ages (ms from reading the value from Redis to the database's answer): the in-flight window. */
  readonly staleAges: readonly number[];
  readonly staleTiers: Readonly<Record<string, number>>;
  /** Checks and stale results of the replay after every worker stopped writing: stale must be 0. */
  readonly quiescentChecks: number;
  readonly quiescentStale: number;
  readonly nearHits: number;
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
  readonly sampler?: SamplerResult;
  readonly stream?: StreamWorkerResult;
}

export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'go'; readonly until: number }
  /**
   * Near and stream runs: this worker stopped writing; on `verify`, sent once all are done, it replays
   * its reads (near) or stops (stream: the consumer stays until no worker waits for it).
   */
  | { readonly type: 'done' }
  | { readonly type: 'verify' }
  | { readonly type: 'result'; readonly result: WorkerResult }
  | { readonly type: 'error'; readonly message: string };

type SqliteConnection = { configure(option: 'busyTimeout', ms: number): void };

/**
 * Opens the shared database. SQLite connections get a busy timeout (Sequelize
 * sets none), so that a writer waits for another process's write lock
 * instead of failing at once.
 */
export async function openShared(db: SharedDatabase): Promise<Sequelize> {
  if (db.server) {
    const user = db.dialect === 'postgres' ? 'postgres' : 'root';
    return new Sequelize(db.server.database, user, '', { host: '127.0.0.1', port: db.server.port, dialect: db.dialect, logging: false });
  }
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

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends a message to the parent process; resolves once it is handed over. */
export function sendToParent(message: unknown): Promise<void> {
  return new Promise((resolve, reject) => process.send!(message, (error: Error | null) => (error ? reject(error) : resolve())));
}

/**
 * A child process's entry: runs main with the configuration its parent passed
 * as the first argument (JSON), then exits; a failure is sent to the parent
 * as `{ type: 'error', message }` first.
 */
export function runChild<C>(main: (config: C) => Promise<void>): void {
  const config = JSON.parse(process.argv[2] ?? '{}') as C;
  main(config).then(
    () => process.exit(0),
    async (error: unknown) => {
      await sendToParent({ type: 'error', message: (error as Error).stack ?? String(error) }).catch(() => undefined);
      process.exit(1);
    },
  );
}
