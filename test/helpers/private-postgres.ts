/**
 * A private PostgreSQL with wal_level=logical on a free port, in a temporary
 * directory, for change-stream tests (the shared server runs wal_level=replica).
 * As root, initdb and the server run as the `postgres` user; stopped by PID.
 *
 * synchronous_standby_names names a standby that never comes while
 * synchronous_commit is `local` for everyone: a session that sets
 * synchronous_commit = on then waits after its commit is flushed (decodable)
 * and before it is visible, until its wait is cancelled (the forced race).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PgClient } from '../../src/stream/pg-server';
import { freePort } from './private-redis';

/** The `pg` package (no type declarations are installed): the client class the tests use. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { Client } = require('pg') as { Client: new (config: Record<string, unknown>) => PgClient };
export type { PgClient };

export interface PrivatePostgres {
  readonly port: number;
  readonly url: string;
  /** A connected `pg` client on the `postgres` database (end it). */
  client(): Promise<PgClient>;
  /** Stops the server (fast shutdown). */
  stop(): Promise<void>;
}

function ids(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const [uid, gid] = execFileSync('id', ['-u', 'postgres']).toString().trim() === '' ? [] : [
    Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()),
  ];
  return { uid: uid!, gid: gid! };
}

async function waitReady(port: number): Promise<void> {
  for (let i = 0; i < 400; i += 1) {
    const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch {
      await client.end().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`private PostgreSQL on port ${port} did not start`);
}

export async function startPrivatePostgres(extra: readonly string[] = []): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-test-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const owner = ids();
  if (owner) chownSync(dir, owner.uid, owner.gid);
  execFileSync('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'], {
    stdio: 'ignore', ...(owner ?? {}),
  });
  const port = await freePort();
  const child: ChildProcess = spawn('postgres', [
    '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
    '-c', 'wal_level=logical', '-c', 'max_replication_slots=10', '-c', 'max_wal_senders=10',
    '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'synchronous_commit=local',
    '-c', 'synchronous_standby_names=nobody', '-c', 'shared_buffers=32MB', ...extra,
  ], { stdio: 'ignore', ...(owner ?? {}) });
  await waitReady(port);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    port,
    url,
    async client() {
      const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await c.connect();
      return c;
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGINT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Drops a replication slot, ending the walsender that holds it first; tried again while that
 * walsender is still exiting (the slot stays active for a moment), at most 100 times.
 */
export async function dropSlot(admin: PgClient, slot: string): Promise<void> {
  for (let i = 0; i < 100; i += 1) {
    try {
      await admin.query('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', [slot]);
      await admin.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
