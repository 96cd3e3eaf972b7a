/**
 * `cacheops stream status` and `cacheops stream drop`: the PostgreSQL side of
 * an installation's change stream, looked at and cleaned up from outside the
 * consumer (an inactive slot keeps WAL without bound).
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsStreamError } from '../core/errors';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { connectPg, defaultSlot, tablesWithoutFullIdentity, type PgClient } from './pg-server';
import { modelsByTable } from './source';

export interface StreamStatus {
  readonly dialect: string;
  readonly walLevel?: string;
  readonly publication?: { readonly name: string; readonly exists: boolean };
  readonly slot?: {
    readonly name: string;
    readonly exists: boolean;
    /** The walsender streaming it to the consumer, if any. */
    readonly activePid?: number | null;
    readonly walStatus?: string | null;
    readonly retainedBytes?: number | null;
    readonly confirmedLsn?: string | null;
  };
  /** The process holding the one-consumer lease (its server process id), or null: no consumer. */
  readonly consumerPid?: number | null;
  /** Tables of the models whose updates invalidate model-wide (no REPLICA IDENTITY FULL). */
  readonly withoutFullIdentity?: readonly string[];
}

function streamOptions(core: CacheopsCore): NormalizedStreamOptions {
  const options = core.config.changeStream;
  if (!options) throw new CacheopsStreamError('the application has no changeStream option');
  return options;
}

async function withClient<T>(core: CacheopsCore, fn: (client: PgClient, options: NormalizedStreamOptions, slot: string) => Promise<T>): Promise<T> {
  const options = streamOptions(core);
  const client = await connectPg(core, options, () => undefined);
  try {
    return await fn(client, options, options.slot ?? defaultSlot(core));
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function streamStatus(core: CacheopsCore): Promise<StreamStatus> {
  if (core.dialect !== 'postgres') return { dialect: core.dialect };
  return withClient(core, async (client, options, slot) => {
    const walLevel = String((await client.query('SHOW wal_level')).rows[0]?.['wal_level']);
    const pub = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [options.publication]);
    const { rows } = await client.query(
      `SELECT active_pid, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained, confirmed_flush_lsn::text AS confirmed
         FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    const lease = await client.query(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
          AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('cacheops-stream:' || $1, 0)`, [slot]);
    const row = rows[0];
    return {
      dialect: 'postgres',
      walLevel,
      publication: { name: options.publication, exists: pub.rows.length > 0 },
      slot: row
        ? { name: slot, exists: true, activePid: row['active_pid'] as number | null, walStatus: row['wal_status'] as string | null, retainedBytes: row['retained'] === null ? null : Number(row['retained']), confirmedLsn: row['confirmed'] as string | null }
        : { name: slot, exists: false },
      consumerPid: (lease.rows[0]?.['pid'] as number | undefined) ?? null,
      withoutFullIdentity: await tablesWithoutFullIdentity(client, [...modelsByTable(core).keys()]),
    };
  });
}

/** Drops the slot (its retained WAL is freed); refuses while a consumer holds the lease. */
export async function dropStreamSlot(core: CacheopsCore): Promise<{ slot: string; dropped: boolean }> {
  if (core.dialect !== 'postgres') throw new CacheopsStreamError(`${core.dialect} has no replication slot`);
  const status = await streamStatus(core);
  const slot = status.slot!.name;
  if (status.consumerPid !== null && status.consumerPid !== undefined) {
    throw new CacheopsStreamError(`slot ${slot} has a consumer (server process ${status.consumerPid}): stop the application's processes first`);
  }
  if (!status.slot!.exists) return { slot, dropped: false };
  await withClient(core, async (client) => {
    // A consumer that just ended: its walsender may hold the slot a moment longer (55006).
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
      } catch (error) {
        if ((error as { code?: string }).code !== '55006' || attempt >= 50) throw error;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });
  return { slot, dropped: true };
}

/** Human-readable lines of a status. */
export function renderStreamStatus(s: StreamStatus): string {
  if (s.dialect === 'sqlite') return 'change stream: SQLite, PRAGMA data_version polled by each process (no slot)\n';
  if (s.dialect !== 'postgres') return `change stream: not available on ${s.dialect}\n`;
  const lines = [
    `wal_level: ${s.walLevel}${s.walLevel === 'logical' ? '' : ' (needs logical)'}`,
    `publication ${s.publication!.name}: ${s.publication!.exists ? 'exists' : 'missing'}`,
    s.slot!.exists
      ? `slot ${s.slot!.name}: ${s.slot!.walStatus}, retains ${s.slot!.retainedBytes ?? '?'} bytes of WAL, confirmed up to ${s.slot!.confirmedLsn}`
      : `slot ${s.slot!.name}: missing (created by the first consumer)`,
    `consumer: ${s.consumerPid === null ? 'none' : `server process ${s.consumerPid}`}`,
    s.withoutFullIdentity!.length === 0 ? 'replica identity: FULL on every table'
      : `replica identity not FULL (updates invalidate model-wide): ${s.withoutFullIdentity!.join(', ')}`,
  ];
  return `${lines.join('\n')}\n`;
}
