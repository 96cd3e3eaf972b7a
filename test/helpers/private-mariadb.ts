/**
 * A private MariaDB with the row binlog (log_bin, binlog_format=ROW,
 * binlog_row_image=FULL) on a free port, in a temporary directory, for the
 * change-stream tests (the shared server has no binlog). Stopped by PID.
 * Tests skip when mariadb-install-db is not installed (mariadbAvailable).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './private-redis';

/** The mysql2/promise connection the tests use as a foreign writer. */
export interface MariaConnection {
  query(sql: string, params?: readonly unknown[]): Promise<[unknown, unknown]>;
  end(): Promise<void>;
  readonly threadId: number | null;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const mysql = require('mysql2/promise') as { createConnection(config: Record<string, unknown>): Promise<MariaConnection> };

export interface PrivateMariadb {
  readonly port: number;
  readonly pid: number;
  /** A connected mysql2 client as root (end it); `database` when given. */
  client(database?: string): Promise<MariaConnection>;
  /** Stops the server (SIGTERM: a clean shutdown) and removes its directory. */
  stop(): Promise<void>;
}

/** The reason the binlog tests cannot run here, or undefined when they can. */
export function mariadbUnavailable(): string | undefined {
  for (const tool of ['mariadb-install-db', 'mariadbd']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed: the MariaDB binlog tests need a private server`;
    }
  }
  return undefined;
}

function binary(name: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`]).toString().trim();
  } catch {
    return `/usr/sbin/${name}`;
  }
}

async function waitReady(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i += 1) {
    if (child.exitCode !== null) throw new Error(`private MariaDB on port ${port} exited (${child.exitCode})`);
    try {
      const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root' });
      await c.end();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`private MariaDB on port ${port} did not start`);
}

export async function startPrivateMariadb(extra: readonly string[] = []): Promise<PrivateMariadb> {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-test-mariadb-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0 ? ['--user=root'] : [];
  const install = (): void => {
    execFileSync(binary('mariadb-install-db'), [
      '--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', ...asRoot,
    ], { stdio: 'pipe' });
  };
  try {
    install();
  } catch (error) {
    // Seen once on a machine at load 25: a second attempt into an empty directory.
    rmSync(data, { recursive: true, force: true });
    try {
      install();
    } catch (again) {
      const e = again as { stderr?: Buffer; stdout?: Buffer };
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`mariadb-install-db failed twice: ${String(e.stderr ?? '')}${String(e.stdout ?? '').slice(-2000)}`, { cause: error });
    }
  }
  const port = await freePort();
  const child = spawn(binary('mariadbd'), [
    '--no-defaults', `--datadir=${data}`, `--port=${port}`, `--socket=${join(dir, 'sock')}`, '--bind-address=127.0.0.1',
    `--log-bin=${join(data, 'bin')}`, '--binlog-format=ROW', '--binlog-row-image=FULL', '--server-id=1',
    '--skip-name-resolve', '--innodb-buffer-pool-size=32M', '--innodb-flush-log-at-trx-commit=2', '--sync-binlog=0',
    `--log-error=${join(dir, 'error.log')}`, ...asRoot, ...extra,
  ], { stdio: 'ignore' });
  await waitReady(port, child);
  return {
    port,
    pid: child.pid!,
    async client(database?: string) {
      return mysql.createConnection({ host: '127.0.0.1', port, user: 'root', ...(database ? { database } : {}) });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
