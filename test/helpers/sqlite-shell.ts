/** The sqlite3 shell as a foreign writer of a SQLite file (tests of the SQLite change stream). */
import { execFileSync, spawnSync } from 'node:child_process';

/** Whether the sqlite3 shell is installed. */
export const hasSqliteShell = spawnSync('sqlite3', ['-version']).status === 0;

/**
 * Runs one statement in the sqlite3 shell, as another program would, with a busy timeout; a
 * "database is locked" answered at once (SQLite's deadlock avoidance skips the busy handler) is
 * tried again, at most 5 times. The time to detection is measured after it succeeded.
 */
export function shellWrite(file: string, sql: string): void {
  for (let attempt = 1; ; attempt += 1) {
    try {
      execFileSync('sqlite3', ['-cmd', '.timeout 5000', file, sql], { stdio: ['ignore', 'pipe', 'pipe'] });
      return;
    } catch (error) {
      if (attempt >= 5 || !/database is locked/.test(String((error as { stderr?: Buffer }).stderr ?? ''))) throw error;
    }
  }
}

