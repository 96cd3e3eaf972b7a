/**
 * SQLite: writes by other connections or processes to the same database file.
 *
 * `PRAGMA data_version` changes on a connection whenever another connection
 * commits to the file. It is read on Sequelize's own default connection, where
 * the application's writes outside transactions run (they do not change it: they
 * are invalidated by the write path already). Any change means a commit by
 * another connection — another process, or a transaction of this one — and
 * invalidates every table of the installation (SQLite says nothing finer).
 * Bound: a foreign commit is invalidated within one poll interval plus one
 * invalidation. At start everything is invalidated once: writes made while no
 * process watched were seen by nobody.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { emptyStats, everything, pause, type ChangeSource, type ChangeStreamStats } from './source';
import { connectionManagerOf, storageOptionsOf } from '../core/sequelize-internals';

export const SQLITE_POLL_MS = 100;

interface SqliteConnection {
  get(sql: string, callback: (error: Error | null, row?: Record<string, unknown>) => void): void;
}

/** The file the Sequelize instance uses; undefined for a database in memory (no other connection can write it). */
export function sqliteFile(core: CacheopsCore): string | undefined {
  const options = storageOptionsOf(core.sequelize);
  const storage = options.storage ?? options.host ?? ':memory:';
  return storage === ':memory:' || storage === '' || storage.startsWith('file::memory:') ? undefined : storage;
}

export class SqliteDataVersion implements ChangeSource {
  readonly stats: ChangeStreamStats = emptyStats('consumer');
  readonly ready: Promise<void> = Promise.resolve();
  private readonly abort = new AbortController();
  private readonly running: Promise<void>;

  constructor(private readonly core: CacheopsCore, private readonly intervalMs: number) {
    this.running = this.loop();
  }

  /** Taken once: after sequelize.close() it fails (closed) instead of opening a new one. */
  private connection: Promise<SqliteConnection> | undefined;

  private async version(): Promise<number> {
    const manager = connectionManagerOf<SqliteConnection>(this.core.sequelize);
    this.connection ??= manager.getConnection({});
    const connection = await this.connection;
    return new Promise((resolve, reject) => {
      connection.get('PRAGMA data_version', (error, row) => (error ? reject(error) : resolve(Number(row?.['data_version']))));
    });
  }

  private async loop(): Promise<void> {
    const { signal } = this.abort;
    let seen: number | undefined;
    let owed = true; // the invalidation at start
    while (!signal.aborted) {
      try {
        const now = await this.version();
        if (seen !== undefined && now !== seen) owed = true;
        seen = now;
        if (owed && !signal.aborted) {
          const at = Date.now();
          // Not acknowledged: kept owed and retried next round (Redis out).
          if (await this.core.invalidateNow(everything(this.core))) {
            owed = false;
            this.stats.events += 1;
            this.stats.lagMs = Date.now() - at;
          }
        }
      } catch (error) {
        // The connection closed (sequelize.close()) or the file went away: nothing more to watch.
        if (!signal.aborted) this.core.config.logger('change stream: SQLite data_version could not be read; foreign writes are no longer seen', error);
        this.stats.role = 'off';
        return;
      }
      await pause(this.intervalMs, signal);
    }
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.running;
  }
}
