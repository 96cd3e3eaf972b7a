/**
 * Starts the change source of an installation's dialect (`changeStream`).
 * Each dialect's source lives in its own file behind ChangeSource.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsConfigError } from '../core/errors';
import { SQLITE_POLL_MS, SqliteDataVersion, sqliteFile } from './sqlite-data-version';
import { MariadbChangeStream } from './mariadb-consumer';
import { PgChangeStream } from './pg-consumer';
import { emptyStats, type ChangeSource } from './source';

/** A source that reads nothing (a SQLite database in memory: no other connection can write it). */
class NoSource implements ChangeSource {
  readonly stats = emptyStats('off');
  readonly ready: Promise<void> = Promise.resolve();
  async close(): Promise<void> { /* nothing runs */ }
}

let disabled = false;

/** The CLI loads the application to look at its stream, not to consume it: no stream starts while fn runs. */
export async function withoutChangeStreams<T>(fn: () => Promise<T>): Promise<T> {
  disabled = true;
  try {
    return await fn();
  } finally {
    disabled = false;
  }
}


export function startChangeStream(core: CacheopsCore): ChangeSource | undefined {
  const options = core.config.changeStream;
  if (!options || !core.config.enabled || disabled) return undefined;
  switch (core.dialect) {
    case 'sqlite':
      return sqliteFile(core) === undefined ? new NoSource() : new SqliteDataVersion(core, options.pollIntervalMs ?? SQLITE_POLL_MS);
    case 'postgres':
      return new PgChangeStream(core, options);
    case 'mysql':
    case 'mariadb':
      return new MariadbChangeStream(core, options);
    default:
      throw new CacheopsConfigError('changeStream', `not available on ${core.dialect} (PostgreSQL, MariaDB/MySQL and SQLite have it)`);
  }
}
