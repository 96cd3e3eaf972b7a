/**
 * `cacheops stream status` and `cacheops stream drop` on MariaDB/MySQL: the
 * server's binlog settings, the acknowledged position (in Redis), the binlog
 * the server keeps after it, and the process holding the consumer lease.
 * Drop forgets the position: the next consumer invalidates everything once
 * and starts at the binlog's current end.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsStreamError } from '../core/errors';
import { ask, connectMysql } from './mariadb-dump';
import { StreamLease, type StoredPosition } from './mariadb-lease';
import { mysqlConfig, retainedBytes } from './mariadb-server';

export interface BinlogStreamStatus {
  readonly dialect: string;
  readonly logBin: boolean;
  readonly binlogFormat: string;
  readonly binlogRowImage: string;
  /** The last acknowledged position, or null: none stored (the next consumer starts afresh). */
  readonly position: StoredPosition | null;
  /** Bytes of binlog after the acknowledged position (null: unknown, or the file is purged). */
  readonly retainedBytes: number | null;
  /** The consumer lease's token (`<fence>:<process id>`), or null: no consumer. */
  readonly consumer: string | null;
}

function lease(core: CacheopsCore): StreamLease {
  const options = core.config.changeStream;
  if (!options) throw new CacheopsStreamError('the application has no changeStream option');
  return new StreamLease(core.redis, core.prefixFor([]), core.db, options.handoverMs * 3);
}

export async function binlogStreamStatus(core: CacheopsCore): Promise<BinlogStreamStatus> {
  const l = lease(core);
  const connection = await connectMysql(mysqlConfig(core, core.config.changeStream!));
  try {
    const [v] = await ask(connection, 'SELECT @@log_bin AS log_bin, @@binlog_format AS format, @@binlog_row_image AS image');
    const position = (await l.position()) ?? null;
    return {
      dialect: core.dialect,
      logBin: Number(v?.['log_bin']) === 1,
      binlogFormat: String(v?.['format']),
      binlogRowImage: String(v?.['image']),
      position,
      retainedBytes: position ? await retainedBytes(connection, position.file, position.position).catch(() => null) : null,
      consumer: await l.holder(),
    };
  } finally {
    connection.destroy();
  }
}

/** Forgets the acknowledged position; refused while a consumer holds the lease. */
export async function forgetBinlogPosition(core: CacheopsCore): Promise<boolean> {
  const l = lease(core);
  const holder = await l.holder();
  if (holder !== null) throw new CacheopsStreamError(`the binlog stream has a consumer (lease ${holder}): stop the application's processes first`);
  return l.forget();
}

export function renderBinlogStatus(s: BinlogStreamStatus): string {
  const p = s.position;
  return `${[
    `log_bin: ${s.logBin ? 'ON' : 'OFF (needs ON)'}`,
    `binlog_format: ${s.binlogFormat}${s.binlogFormat === 'ROW' ? '' : ' (needs ROW)'}`,
    `binlog_row_image: ${s.binlogRowImage}${s.binlogRowImage === 'FULL' ? '' : ' (FULL for granular invalidation)'}`,
    p ? `acknowledged: ${p.gtid !== undefined ? `GTID ${p.gtid || '(empty)'}, ` : ''}${p.file}:${p.position}, ${s.retainedBytes ?? '?'} bytes of binlog after it`
      : 'acknowledged: none (the first consumer starts at the current end)',
    `consumer: ${s.consumer === null ? 'none' : `lease ${s.consumer}`}`,
  ].join('\n')}\n`;
}
