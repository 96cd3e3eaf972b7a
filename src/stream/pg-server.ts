/**
 * What the PostgreSQL consumer asks the server: its connection, the checks and
 * one-time setup (wal_level, publication, slot, replica identity), the slot's
 * state, the one-consumer lease, and whether transactions are visible yet.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsStreamError } from '../core/errors';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { connectionConfigOf } from '../core/sequelize-internals';

export interface PgClient {
  query(sql: string, params?: readonly unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  connect(): Promise<void>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

interface PgModule {
  Client: new (config: unknown) => PgClient;
}

/** The `pg` client settings of the consumer: `connection`, or Sequelize's host, port, user, password and database. */
export function pgConfig(core: CacheopsCore, options: NormalizedStreamOptions): Record<string, unknown> {
  const c = connectionConfigOf(core.sequelize);
  const given = options.connection;
  const config = typeof given === 'string'
    ? { connectionString: given }
    : { host: c.host, port: c.port === undefined ? undefined : Number(c.port), user: c.username, password: c.password ?? undefined, database: c.database, ...given };
  return { ...config, application_name: 'cacheops-stream' };
}

/**
 * A connected client of its own (the `pg` package Sequelize uses), in UTC with
 * ISO dates, whose queries run one after another (serialized).
 */
export async function connectPg(core: CacheopsCore, options: NormalizedStreamOptions, onError: (error: Error) => void): Promise<PgClient> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pg = require('pg') as PgModule;
  const client = serialized(new pg.Client(pgConfig(core, options)));
  client.on('error', onError);
  await client.connect();
  await client.query("SET DateStyle = 'ISO'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'");
  return client;
}

/**
 * The client with each query sent only once the one before it has settled.
 * The consumer's slot check (a timer) and the applier's visibility question
 * share one client and may ask at once; `pg` deprecates a query sent while
 * another runs on the same client (8.19 on) and pg 9 refuses it.
 */
export function serialized(client: PgClient): PgClient {
  let last: Promise<unknown> = Promise.resolve();
  return {
    query(sql, params) {
      const run = last.then(() => (params === undefined ? client.query(sql) : client.query(sql, params)));
      last = run.catch(() => undefined);
      return run;
    },
    connect: () => client.connect(),
    end: () => client.end(),
    on: (event, listener) => client.on(event, listener),
  };
}

export function defaultSlot(core: CacheopsCore): string {
  const db = core.db.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return `cacheops_${db}`.slice(0, 63);
}

const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** The setup statements a user runs once (docs/change-stream.md), for messages. */
export function setupStatements(slot: string, publication: string): string {
  return `CREATE PUBLICATION ${publication} FOR ALL TABLES; SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput');`;
}

/**
 * The server settings the start check requires, by name (docker-compose.yml is
 * tested against this list, so that the two cannot drift apart).
 */
export const PG_REQUIRED_SETTINGS = { wal_level: 'logical' } as const;

/** wal_level must be logical: a plain error saying how to set it. */
export async function checkWalLevel(client: PgClient): Promise<void> {
  const { rows } = await client.query('SHOW wal_level');
  const level = String(rows[0]?.['wal_level']);
  if (level !== PG_REQUIRED_SETTINGS.wal_level) {
    throw new CacheopsStreamError(`change stream: the server runs with wal_level=${level}; it needs wal_level=logical ` +
      "(ALTER SYSTEM SET wal_level = 'logical', then restart PostgreSQL)");
  }
}

/** Creates the publication when missing (FOR ALL TABLES), or says which statement to run. */
export async function ensurePublication(client: PgClient, publication: string, create: boolean, slot: string): Promise<void> {
  const { rows } = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  if (rows.length > 0) return;
  if (!create) throw new CacheopsStreamError(`change stream: publication ${publication} does not exist; run ${setupStatements(slot, publication)}`);
  try {
    await client.query(`CREATE PUBLICATION ${quoteIdent(publication)} FOR ALL TABLES`);
  } catch (error) {
    if ((error as { code?: string }).code === '42710') return; // created meanwhile by another process
    throw new CacheopsStreamError(`change stream: cannot create publication ${publication} (${(error as Error).message}); ` +
      `run as a superuser: ${setupStatements(slot, publication)}`);
  }
}

export type SlotState = { readonly exists: false } | {
  readonly exists: true;
  /** The server gave up the WAL the slot needed (max_slot_wal_keep_size): its changes are gone. */
  readonly lost: boolean;
  readonly retainedBytes: number | null;
};

export async function slotState(client: PgClient, slot: string): Promise<SlotState> {
  const { rows } = await client.query(
    'SELECT wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  const row = rows[0];
  if (!row) return { exists: false };
  return { exists: true, lost: row['wal_status'] === 'lost', retainedBytes: row['retained'] === null ? null : Number(row['retained']) };
}

/** Creates the slot; false when another process created it first. */
export async function createSlot(client: PgClient, slot: string, publication: string): Promise<boolean> {
  try {
    await client.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === '42710') return false;
    throw new CacheopsStreamError(`change stream: cannot create replication slot ${slot} (${(error as Error).message}); ` +
      `run as a superuser or a role WITH REPLICATION: ${setupStatements(slot, publication)}`);
  }
}

export async function dropSlot(client: PgClient, slot: string): Promise<void> {
  await client.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
}

/**
 * The one-consumer lease: a session advisory lock named after the slot. The
 * server frees it when the holder's connection ends, so a dead consumer's
 * lease is free as soon as its connection is gone.
 */
export async function tryLease(client: PgClient, slot: string): Promise<boolean> {
  const { rows } = await client.query("SELECT pg_try_advisory_lock(hashtextextended('cacheops-stream:' || $1, 0)) AS ok", [slot]);
  return rows[0]?.['ok'] === true;
}

/** Tables of the given names whose replica identity is not FULL (their updates invalidate model-wide). */
export async function tablesWithoutFullIdentity(client: PgClient, tables: readonly string[]): Promise<string[]> {
  if (tables.length === 0) return [];
  const { rows } = await client.query(
    `SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END AS name,
            c.relreplident AS identity
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p')`, []);
  const wanted = new Set(tables);
  return rows.filter((r) => wanted.has(String(r['name'])) && r['identity'] !== 'f').map((r) => String(r['name']));
}

/**
 * Whether every transaction (32-bit xids from the stream) is visible to a
 * snapshot taken now. A transaction is decoded once its commit record is
 * flushed, which is before other sessions see it; invalidating earlier would
 * let a reader still seeing the old row store it after the invalidation.
 */
export async function allVisible(client: PgClient, xids: readonly number[], snapshot?: string): Promise<boolean> {
  if (xids.length === 0) return true;
  const text = snapshot ?? String((await client.query('SELECT pg_current_snapshot()::text AS s')).rows[0]?.['s']);
  return visibleIn(text, xids);
}

/** Whether every transaction (32-bit xids) is visible in a snapshot (`xmin:xmax:xip,...`, 64-bit ids). */
export function visibleIn(snapshot: string, xids: readonly number[]): boolean {
  const [xminText = '0', xmaxText = '0', xipText = ''] = snapshot.split(':');
  const xmin = BigInt(xminText);
  const xmax = BigInt(xmaxText);
  const inProgress = new Set(xipText === '' ? [] : xipText.split(',').map((x) => BigInt(x)));
  return xids.every((xid) => {
    // The 64-bit id: the epoch of xmax, one less when the low half is above xmax's.
    let full = (xmax & ~0xffffffffn) | BigInt(xid);
    if (full > xmax) full -= 0x100000000n;
    return full < xmin || (full < xmax && !inProgress.has(full));
  });
}
