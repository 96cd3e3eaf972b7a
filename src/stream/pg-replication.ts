/**
 * The streaming replication protocol on a `pg` connection opened with
 * `replication: 'database'` (a walsender): START_REPLICATION of a logical slot
 * answers CopyBothResponse, then the server sends CopyData messages, XLogData
 * ('w': one pgoutput message) and primary keepalives ('k': the server's WAL end,
 * and whether it wants a reply now), and reads our standby status updates
 * ('r': write, flush and apply positions). For a logical slot the flush
 * position becomes the slot's confirmed position: the server forgets what is
 * before it, so it must only ever be a position whose invalidation Redis took.
 *
 * The walsender decodes each WAL record once and sends a transaction as soon
 * as its commit is decoded: no polling, no decoding again from the slot's
 * restart point.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { pgConfig } from './pg-server';

/** What the stream hands its reader. */
export interface ReplicationHandlers {
  /** One pgoutput message at `lsn` (XLogData). */
  data(lsn: bigint, message: Buffer): void;
  /** A primary keepalive: the server's WAL end; `replyRequested` when it waits for a status update. */
  keepalive(walEnd: bigint, replyRequested: boolean): void;
}

/** The parts of `pg`'s Connection the COPY BOTH mode needs (pg emits every backend message by name). */
interface WireConnection {
  on(event: 'copyData' | 'replicationStart', listener: (message: { chunk: Buffer }) => void): unknown;
  off(event: 'copyData' | 'replicationStart', listener: (message: { chunk: Buffer }) => void): unknown;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

interface ReplicationClient {
  readonly connection: WireConnection;
  readonly processID: number | null;
  query(sql: string): Promise<unknown>;
  connect(): Promise<void>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01. */
const PG_EPOCH_US = 946_684_800_000_000n;
const XLOG_DATA = 0x77; // 'w'
const KEEPALIVE = 0x6b; // 'k'
const STATUS_UPDATE = 0x72; // 'r'
/** Decoded values print by the walsender's settings: fixed, so pg-rows.ts reads them exactly. */
const SESSION_OPTIONS = '-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=3';

export class ReplicationStream {
  /** Settles when the server ends the stream (after stop(), or with its error). */
  private ended: Promise<void> | undefined;
  private stopping = false;
  /** Our listeners on the connection (pg has its own there too). */
  private listeners: { copyData: (message: { chunk: Buffer }) => void; start: () => void } | undefined;

  private constructor(private readonly client: ReplicationClient) {}

  /** A connected walsender session on the database (the role needs REPLICATION or superuser). */
  static async open(core: CacheopsCore, options: NormalizedStreamOptions, onError: (error: Error) => void): Promise<ReplicationStream> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pg = require('pg') as { Client: new (config: unknown) => ReplicationClient };
    const config = pgConfig(core, options);
    const given = typeof config['options'] === 'string' ? `${config['options']} ` : '';
    const client = new pg.Client({ ...config, replication: 'database', options: `${given}${SESSION_OPTIONS}`, keepAlive: true });
    client.on('error', onError);
    await client.connect();
    return new ReplicationStream(client);
  }

  /** The walsender's process id (pg_replication_slots.active_pid while streaming). */
  get pid(): number | null {
    return this.client.processID;
  }

  /**
   * Starts streaming the slot from its confirmed position (LSN 0/0: the server
   * starts at the slot's confirmed_flush_lsn); resolves once the server
   * answered CopyBothResponse, rejects with the server's error (no slot, slot
   * in use by another process, WAL removed).
   */
  async start(slot: string, publication: string, handlers: ReplicationHandlers): Promise<void> {
    const wire = this.client.connection;
    this.unlisten();
    let started!: () => void;
    const begun = new Promise<void>((resolve) => { started = resolve; });
    const copyData = ({ chunk }: { chunk: Buffer }): void => {
      if (this.stopping) return; // in flight when CopyDone was sent: replayed by the next consumer
      const kind = chunk[0];
      if (kind === XLOG_DATA) handlers.data(chunk.readBigUInt64BE(1), chunk.subarray(25));
      else if (kind === KEEPALIVE) handlers.keepalive(chunk.readBigUInt64BE(1), chunk[17] === 1);
    };
    this.listeners = { copyData, start: () => started() };
    wire.on('replicationStart', this.listeners.start);
    wire.on('copyData', copyData);
    const sql = `START_REPLICATION SLOT "${slot}" LOGICAL 0/0 (proto_version '1', publication_names '"${publication}"')`;
    this.ended = this.client.query(sql).then(() => undefined);
    await Promise.race([begun, this.ended]);
  }

  private unlisten(): void {
    if (!this.listeners) return;
    this.client.connection.off('copyData', this.listeners.copyData);
    this.client.connection.off('replicationStart', this.listeners.start);
    this.listeners = undefined;
  }

  /** Settles when the stream ends: resolves after stop(), rejects when the server or the connection ends it. */
  get done(): Promise<void> {
    return this.ended ?? Promise.resolve();
  }

  /**
   * A standby status update: `received` as the write position (informative),
   * `acknowledged` as flush and apply (the slot's confirmed position).
   */
  sendStatus(received: bigint, acknowledged: bigint): void {
    if (this.stopping) return;
    const message = Buffer.alloc(34);
    message[0] = STATUS_UPDATE;
    message.writeBigUInt64BE(received > acknowledged ? received : acknowledged, 1);
    message.writeBigUInt64BE(acknowledged, 9);
    message.writeBigUInt64BE(acknowledged, 17);
    message.writeBigInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_US, 25);
    message[33] = 0;
    this.client.connection.sendCopyFromChunk(message);
  }

  /**
   * Ends the stream: CopyDone, then the server answers CopyDone and ends the
   * command, which releases the slot before the connection closes (so a
   * `cacheops stream drop` right after finds it inactive).
   */
  async stop(waitMs: number): Promise<void> {
    if (this.ended && !this.stopping) {
      this.stopping = true;
      try {
        this.client.connection.endCopyFrom();
        await Promise.race([this.ended.catch(() => undefined), new Promise((r) => setTimeout(r, waitMs).unref())]);
      } catch {
        // the connection is gone already
      }
    }
    this.stopping = true;
    this.unlisten();
    await this.client.end().catch(() => undefined);
  }
}
