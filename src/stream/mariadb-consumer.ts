/**
 * MariaDB/MySQL change stream: one consumer per database among all processes
 * (a Redis lease with a fencing token, mariadb-lease.ts) reads the row binlog
 * as a replica (mariadb-dump.ts) and turns each committed transaction on a
 * cached table into the invalidation an in-app write sends.
 *
 * Position: MariaDB's GTID state (with the file and position too; file and
 * position alone on MySQL), stored in Redis only after the transactions up to
 * it were invalidated, by a script that refuses a stale lease token. A restart
 * or a Redis outage replays from there (invalidation is idempotent). A position
 * the server no longer has (binlogs purged: error 1236) invalidates everything
 * the stream covers once, loudly, and the stream goes on from the current end.
 * Before invalidating, the consumer waits until each transaction is committed
 * in InnoDB (the binlog is written first): see untilCommitted.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { tableOf } from '../core/tables';
import { parseEvent, rowImages, type TableMap } from './mariadb-binlog';
import { ask, connectMysql, startDump, type DumpStart, type MysqlConnection } from './mariadb-dump';
import { StreamLease, type StoredPosition } from './mariadb-lease';
import { BinlogTransaction, tablesOfStatement, type CoveredTable } from './mariadb-rows';
import { checkServer, currentPosition, mysqlConfig, retainedBytes, tableColumns, untilAllCommitted, untilCommitted, type ServerFacts } from './mariadb-server';
import { UnknownSize, type SchemaColumn, type WallOffset } from './mariadb-values';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { emptyStats, everything, modelsByTable, pause, runSessions, warnOnce, type ChangeSource, type ChangeStreamStats } from './source';
import { timezoneOf } from '../core/sequelize-internals';
import { STREAM_DONE_EVENT, STREAM_RESET_EVENT } from '../write/stream-wait';

/** The internal event after a transaction is decoded, before its visibility wait (tests). */
export const MARIADB_DECODED_EVENT = 'changeStream:decoded';
/** The internal event after each acknowledged batch: `{ lagMs, events }`. */
export const MARIADB_APPLIED_EVENT = 'changeStream:applied';
/** Tests only: turns the commit-visibility wait off, to show the race it closes. Never set by the library. */
export const visibilityTesting = { skipWait: false };

const RETRY_MS = 500;
const STATE_EVERY_MS = 1000;
const BATCH_TRANSACTIONS = 200;
const HEARTBEAT_MS = 5000;
/** Seconds the visibility wait waits for a row lock before invalidating anyway (and again later). */
const LOCK_WAIT_S = 5;

class Restart extends Error {}

/**
 * Milliseconds from a transaction's commit to now, as closely as the binlog
 * tells: from the arrival of its commit event (exact while the consumer keeps
 * up: the server pushes the event as it writes it), or, when that is smaller,
 * the least its whole-second binlog timestamp allows (a consumer behind by
 * seconds shows it, within one second).
 */
export function lagOf(tx: { timestamp: number; receivedAt: number }, now: number): number {
  return Math.max(0, now - tx.receivedAt, now - tx.timestamp * 1000 - 999);
}

/** Sequelize's `timezone` as minutes east of UTC; undefined for a named zone (DATETIME values then not decoded). */
function wallOffset(core: CacheopsCore): WallOffset {
  const tz = String(timezoneOf(core.sequelize) ?? '+00:00');
  const m = /^([+-])(\d\d):(\d\d)$/.exec(tz);
  if (!m) return tz === 'Z' || tz === 'UTC' ? 0 : undefined;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

/** A replica's server id of its own: `serverId`, else one derived from the database (below 2^31). */
function defaultServerId(db: string): number {
  let h = 0;
  for (const ch of `cacheops:${db}`) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return 1_000_000 + (h % 1_000_000_000);
}

/** A transaction read to its end, waiting in a batch. */
interface Committed { readonly tx: BinlogTransaction; readonly position: StoredPosition; readonly gtid: string | undefined }

export class MariadbChangeStream implements ChangeSource {
  readonly stats: ChangeStreamStats = emptyStats('standby');
  readonly ready: Promise<void>;
  private settle!: (error?: Error) => void;
  private readonly abort = new AbortController();
  private readonly running: Promise<void>;
  private readonly lease: StreamLease;
  private control: MysqlConnection | undefined;
  private dump: MysqlConnection | undefined;
  private readonly columns = new Map<string, SchemaColumn[]>();
  private readonly maps = new Map<number, TableMap>();
  private warned = { connection: false, lag: false, retained: false, visibility: false };

  constructor(private readonly core: CacheopsCore, private readonly options: NormalizedStreamOptions) {
    this.lease = new StreamLease(core.redis, core.prefixFor([]), core.db, options.handoverMs * 3);
    this.ready = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error ? reject(error) : resolve());
    });
    this.ready.catch(() => undefined);
    this.running = runSessions({
      signal: this.abort.signal, stats: this.stats, warned: this.warned, retryMs: RETRY_MS,
      session: () => this.session(), disconnect: () => this.disconnect(), settle: (error) => this.settle(error), log: (m, e) => this.log(m, e),
      warning: 'change stream: MariaDB connection or Redis failed; retrying', reading: 'the binlog', restart: (error) => error instanceof Restart,
    });
  }

  private log(message: string, error?: unknown): void {
    this.core.config.logger(message, error);
  }

  private async disconnect(): Promise<void> {
    this.dump?.destroy();
    this.dump = undefined;
    this.control?.destroy();
    this.control = undefined;
    if (this.lease.held) await this.lease.release();
  }

  private covered(schema: string, table: string): CoveredTable | undefined {
    if (schema !== this.core.db) return undefined;
    const model = modelsByTable(this.core).get(table);
    return model ? { schema, table: tableOf(model), model } : undefined;
  }

  private allCovered(): CoveredTable[] {
    return [...modelsByTable(this.core)].map(([table, model]) => ({ schema: this.core.db, table, model }));
  }

  private async session(): Promise<void> {
    const { signal } = this.abort;
    const config = mysqlConfig(this.core, this.options);
    const control = await connectMysql(config);
    this.control = control;
    control.on('error', () => undefined);
    const facts = await checkServer(control, (m) => this.log(m));
    await ask(control, `SET SESSION innodb_lock_wait_timeout = ${LOCK_WAIT_S}, lock_wait_timeout = ${LOCK_WAIT_S}`);
    this.warned.connection = false;
    while (!(await this.lease.acquire())) {
      this.stats.role = 'standby';
      this.settle();
      await pause(this.options.handoverMs, signal);
      if (signal.aborted) return;
    }
    this.stats.role = 'consumer';
    let stored = await this.lease.position();
    if (!stored) stored = await this.startAfresh(control, facts, false);
    const start: DumpStart = facts.mariadb && stored.gtid !== undefined ? { gtid: stored.gtid } : { file: stored.file, position: stored.position };
    await this.consume(config, control, facts, stored, start);
  }

  /** No position (first start, or lost): everything is invalidated, and the stream starts at the current end. */
  private async startAfresh(control: MysqlConnection, facts: ServerFacts, lost: boolean): Promise<StoredPosition> {
    const now = await currentPosition(control, facts.mariadb);
    const position: StoredPosition = { ...(now.gtid !== undefined ? { gtid: now.gtid } : {}), file: now.file, position: now.position };
    if (lost) {
      this.stats.resets += 1;
      this.log('change stream: the acknowledged binlog position is no longer on the server (binlogs purged); changes since then are unknown: ' +
        `invalidating every table the stream covers and going on from ${now.gtid ?? `${now.file}:${now.position}`}`);
    }
    // Changes before the start are not in the stream (writes while no consumer had a position);
    // the writes waiting now are covered by this invalidation (write/stream-wait.ts).
    const reset = {};
    this.core.events.emit(STREAM_RESET_EVENT, { token: reset, phase: 'begin' });
    while (!(await this.core.invalidateNow(everything(this.core)))) {
      if (this.abort.signal.aborted) throw new Restart();
      await pause(RETRY_MS, this.abort.signal);
    }
    this.core.events.emit(STREAM_RESET_EVENT, { token: reset, phase: 'end' });
    if (!(await this.lease.acknowledge(position))) throw new Restart();
    return position;
  }

  private async consume(config: Record<string, unknown>, control: MysqlConnection, facts: ServerFacts, stored: StoredPosition, start: DumpStart): Promise<void> {
    const { signal } = this.abort;
    // Each event with the time it arrived: the lag is measured from there (binlog timestamps are whole seconds).
    const queue: { raw: Buffer; at: number }[] = [];
    let wake: (() => void) | undefined;
    let failure: (Error & { errno?: number }) | undefined;
    const dump = await connectMysql(config);
    this.dump = dump;
    dump.on('error', (error) => { failure ??= error; wake?.(); });
    let paused = false;
    // The server sends a heartbeat after HEARTBEAT_MS of silence: none for three periods is a dead connection.
    let lastEventAt = Date.now();
    await startDump(dump, start, this.options.serverId ?? defaultServerId(this.core.db), HEARTBEAT_MS, {
      event: (raw) => {
        lastEventAt = Date.now();
        queue.push({ raw: Buffer.from(raw), at: lastEventAt });
        if (queue.length > 10_000 && !paused) { paused = true; dump.pause(); }
        wake?.();
      },
      error: (error) => { failure ??= error; wake?.(); },
    });
    this.settle();
    const renewal = setInterval(() => {
      this.lease.renew().then((held) => { if (!held) { failure ??= new Restart('the lease was lost'); wake?.(); } }, () => undefined);
    }, Math.max(10, this.options.handoverMs / 2));
    renewal.unref();
    const gtids = new Map<number, string>((stored.gtid ?? '').split(',').filter(Boolean).map((g) => [Number(g.split('-')[0]), g]));
    let file = stored.file;
    let position = stored.position;
    let tx: BinlogTransaction | undefined;
    let txGtid: { domain: number; gtid: string; standalone: boolean } | undefined;
    // Inside BEGIN ... COMMIT (or a GTID group that is not standalone): a statement there (SAVEPOINT,
    // ROLLBACK TO) is part of the transaction, and no position inside it is ever acknowledged.
    let open = false;
    const committed: Committed[] = [];
    const offset = wallOffset(this.core);
    const maxRows = this.core.config.maxRowsForGranularWrite;
    let lastState = 0;
    try {
      while (!signal.aborted) {
        if (failure) {
          if (failure instanceof Restart) throw failure;
          if (failure.errno === 1236) {
            await this.startAfresh(control, facts, true);
            throw new Restart();
          }
          throw failure;
        }
        if (Date.now() - lastState > STATE_EVERY_MS) {
          lastState = Date.now();
          await this.lookAtServer(control, file, position);
        }
        const next = queue.shift();
        if (next === undefined) {
          if (committed.length > 0) {
            await this.flush(control, committed.splice(0));
            continue;
          }
          if (failure) continue;
          if (!paused && Date.now() - lastEventAt > 3 * HEARTBEAT_MS) throw new Error(`no binlog event nor heartbeat for ${3 * HEARTBEAT_MS} ms`);
          await new Promise<void>((resolve) => {
            wake = resolve;
            const t = setTimeout(resolve, STATE_EVERY_MS);
            t.unref();
          });
          wake = undefined;
          continue;
        }
        if (paused && queue.length < 1000) { paused = false; dump.resume(); }
        const { header, event } = parseEvent(next.raw);
        if (header.nextPosition > 0) position = header.nextPosition;
        const commit = (): void => {
          if (txGtid) gtids.set(txGtid.domain, txGtid.gtid);
          const at: StoredPosition = { ...(facts.mariadb ? { gtid: [...gtids.values()].join(',') } : {}), file, position };
          const gtid = txGtid?.gtid;
          if (tx) {
            tx.timestamp = header.timestamp;
            tx.receivedAt = next.at;
            committed.push({ tx, position: at, gtid });
          } else committed.push({ tx: new BinlogTransaction(maxRows), position: at, gtid });
          tx = undefined;
          txGtid = undefined;
          open = false;
        };
        switch (event.kind) {
          case 'rotate':
            file = event.file;
            position = event.position;
            break;
          case 'gtid':
            tx = new BinlogTransaction(maxRows);
            txGtid = event;
            open = !event.standalone;
            break;
          case 'query': {
            const sql = event.sql.trim().toUpperCase();
            if (sql === 'BEGIN') { tx ??= new BinlogTransaction(maxRows); open = true; break; }
            if (sql === 'COMMIT' || sql === 'ROLLBACK') { commit(); break; }
            const current = tx ?? new BinlogTransaction(maxRows);
            for (const covered of tablesOfStatement(event.sql, event.schema, this.allCovered())) {
              current.addAll(covered);
              this.columns.delete(covered.table);
            }
            tx = current;
            if (!open) commit();
            break;
          }
          case 'opaqueQuery':
            tx ??= new BinlogTransaction(maxRows);
            for (const covered of this.allCovered()) tx.addAll(covered);
            if (!open) commit();
            break;
          case 'xid':
            commit();
            break;
          case 'tableMap':
            this.maps.set(event.map.tableId, event.map);
            break;
          case 'rows':
          case 'opaqueRows': {
            const map = this.maps.get(event.tableId);
            if (!map) break;
            const covered = this.covered(map.schema, map.table);
            if (!covered) break;
            tx ??= new BinlogTransaction(maxRows);
            if (event.kind === 'opaqueRows' || facts.granular !== true) { tx.addAll(covered); break; }
            try {
              let columns = this.columns.get(covered.table);
              if (!columns || columns.length !== map.types.length) {
                columns = await tableColumns(control, map.schema, map.table);
                this.columns.set(covered.table, columns);
              }
              tx.addImages(covered, rowImages(event.op, map, event.body, columns, offset), columns);
            } catch (error) {
              // A column type not measured here, images not FULL, or columns changed: the whole
              // model, and the columns are read again for the next event.
              if (!(error instanceof UnknownSize)) this.log(`change stream: cannot read rows of ${covered.table}; invalidating the model`, error);
              this.columns.delete(covered.table);
              tx.addAll(covered);
            }
            break;
          }
          default:
        }
        if (committed.length >= BATCH_TRANSACTIONS) await this.flush(control, committed.splice(0));
      }
    } finally {
      clearInterval(renewal);
    }
  }

  /** Waits for visibility, invalidates, tells the waiting writes, then acknowledges the last position. */
  private async flush(control: MysqlConnection, batch: Committed[]): Promise<void> {
    const changed = batch.filter((b) => !b.tx.empty);
    const late: BinlogTransaction[] = [];
    if (changed.length > 0) {
      this.core.events.emit(MARIADB_DECODED_EVENT, { transactions: changed.length, ids: changed.map((b) => b.gtid) });
      if (!visibilityTesting.skipWait) {
        // A write of this process whose COMMIT returned is visible (`writes: 'stream'`).
        // One bounded wait for the batch's replies, not one per transaction.
        const candidates = changed.filter((b) => b.tx.target !== undefined);
        const asked = candidates.flatMap((b) => (b.gtid === undefined ? [] : [b.gtid]));
        const here = asked.length > 0 && this.core.committedHere ? await this.core.committedHere(asked) : new Set<string>();
        const waiting = candidates.filter((b) => b.gtid === undefined || !here.has(b.gtid));
        const notSeen = new Set(await untilAllCommitted(control, waiting.map(({ tx }) => tx.target!)));
        for (const { tx } of waiting) if (notSeen.has(tx.target!)) late.push(tx);
      }
      const items = changed.flatMap(({ tx }) => tx.items());
      // Told in the invalidation's script: the writers of the visible ones (a late one is told once it is).
      const announced = changed.filter((b) => b.gtid !== undefined && !late.includes(b.tx)).map((b) => b.gtid!);
      const done = announced.length > 0 ? this.core.announcementFor?.(announced) : undefined;
      while (!(await this.core.invalidateNow(items, done))) {
        // Redis is out: the position stays where it is; retried until it is back (or the stream closes).
        if (this.abort.signal.aborted) throw new Restart();
        await pause(RETRY_MS, this.abort.signal);
      }
    }
    // Writes of `writes: 'stream'` waiting for these transactions (write/stream-wait.ts), once Redis took
    // their invalidation, before the position's acknowledgement (a round trip of no concern to them);
    // a late one is not done yet.
    const done = batch.filter((b) => b.gtid !== undefined && !late.includes(b.tx)).map((b) => b.gtid!);
    if (done.length > 0) this.core.events.emit(STREAM_DONE_EVENT, done);
    for (const tx of late) this.invalidateWhenCommitted(tx);
    const last = batch[batch.length - 1]!;
    if (!(await this.lease.acknowledge(last.position))) throw new Restart('the lease was lost');
    if (changed.length === 0) return;
    const events = changed.reduce((n, { tx }) => n + tx.events, 0);
    this.stats.events += events;
    this.stats.lagMs = lagOf(changed[changed.length - 1]!.tx, Date.now());
    this.core.events.emit(MARIADB_APPLIED_EVENT, { lagMs: this.stats.lagMs, events });
    warnOnce(this.warned, 'lag', this.stats.lagMs > this.options.lagWarningMs,
      `change stream: ${this.stats.lagMs} ms from commit to invalidation (lagWarningMs ${this.options.lagWarningMs})`, (m) => this.log(m));
  }

  /**
   * A row lock not granted within LOCK_WAIT_S: a later transaction holds the row (or the
   * commit itself takes that long). The stream does not stall behind it: the change was
   * invalidated already, and is invalidated again once the lock is granted, on a
   * connection of its own.
   */
  private invalidateWhenCommitted(tx: BinlogTransaction): void {
    const target = tx.target!;
    if (!this.warned.visibility) {
      this.warned.visibility = true;
      this.log(`change stream: a row of ${target.table} stayed locked ${LOCK_WAIT_S} s after its transaction was in the binlog; ` +
        'invalidated now, and again once the lock is released');
    }
    const run = async (): Promise<void> => {
      const connection = await connectMysql(mysqlConfig(this.core, this.options));
      try {
        connection.on('error', () => undefined);
        while (!this.abort.signal.aborted && !(await untilCommitted(connection, target.schema, target.table, target.key))) { /* waits again */ }
      } finally {
        connection.destroy();
      }
      await this.core.invalidateNow(tx.items());
    };
    run().catch((error: unknown) => this.log('change stream: the second invalidation after a lock wait failed', error));
  }

  private async lookAtServer(control: MysqlConnection, file: string, position: number): Promise<void> {
    const stored = await this.lease.position();
    const retained = await retainedBytes(control, stored?.file ?? file, stored?.position ?? position).catch(() => null);
    this.stats.retainedBytes = retained;
    warnOnce(this.warned, 'retained', (retained ?? 0) > this.options.retainedWarningBytes,
      `change stream: the server keeps ${retained} bytes of binlog after the acknowledged position (retainedWarningBytes ${this.options.retainedWarningBytes})`, (m) => this.log(m));
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.running;
    await this.disconnect();
    this.stats.role = 'off';
  }
}
