/**
 * The consumer's side of a replication stream: pgoutput messages are gathered
 * per transaction as the walsender sends them; each committed transaction
 * joins the next batch, and a batch is invalidated as soon as the previous one
 * is done (one transaction when they come one by one, the consecutive ones
 * that committed meanwhile under load). A batch waits until its transactions
 * are visible to new snapshots, is invalidated in Redis, and only then is its
 * end acknowledged to the server (the flush position of a status update): a
 * crash or a Redis outage replays from there.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { tableOf } from '../core/tables';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { decodePgoutput, type PgMessage } from './pgoutput';
import type { ReplicationHandlers, ReplicationStream } from './pg-replication';
import { TransactionChanges, type Relation } from './pg-rows';
import { allVisible, type PgClient } from './pg-server';
import { modelsByTable, pause, type ChangeStreamStats } from './source';
import { STREAM_DONE_EVENT } from '../write/stream-wait';

/** The internal event each batch emits before its visibility wait and invalidation (tests, bench). */
export const DECODED_EVENT = 'changeStream:decoded';
/** The internal event after each acknowledged batch: `{ lagMs, events }`. */
export const APPLIED_EVENT = 'changeStream:applied';
/** Wait between two attempts at a batch Redis did not take. */
export const RETRY_MS = 500;

/** Committed transactions not invalidated yet. */
interface Batch {
  readonly changes: TransactionChanges;
  readonly xids: number[];
  endLsn: bigint;
  commitTime: number;
}

// pgoutput message tags of row changes: their relation decides whether the tuple is decoded at all.
const INSERT = 0x49;
const UPDATE = 0x55;
const DELETE = 0x44;

export class StreamApplier implements ReplicationHandlers {
  private readonly relations = new Map<number, Relation>();
  private open: { readonly xid: number; readonly changes: TransactionChanges } | undefined;
  private next: Batch | undefined;
  private applying = false;
  /** Highest position received (XLogData or keepalive): the status update's write position. */
  private received = 0n;
  /** Highest WAL end a keepalive announced. */
  private announced = 0n;
  /** The slot's confirmed position as we told it: only what Redis took, or a keepalive's end when nothing waited. */
  private acknowledged = 0n;
  private wake: (() => void) | undefined;

  constructor(
    private readonly core: CacheopsCore,
    private readonly options: NormalizedStreamOptions,
    private readonly stats: ChangeStreamStats,
    private readonly control: PgClient,
    private readonly stream: ReplicationStream,
    private readonly warnLag: (lagMs: number) => void,
  ) {}

  data(lsn: bigint, message: Buffer): void {
    if (lsn > this.received) this.received = lsn;
    const tag = message[0];
    if (tag === INSERT || tag === UPDATE || tag === DELETE) {
      const open = this.open;
      if (open && !open.changes.settled(this.relations.get(message.readUInt32BE(1)))) open.changes.addMessage(decodePgoutput(message), this.relations);
      return;
    }
    const decoded = decodePgoutput(message);
    switch (decoded.tag) {
      case 'begin':
        this.open = { xid: decoded.xid, changes: new TransactionChanges(this.core.config.maxRowsForGranularWrite) };
        return;
      case 'relation':
        this.relations.set(decoded.relid, this.relationOf(decoded));
        return;
      case 'truncate':
        this.open?.changes.addMessage(decoded, this.relations);
        return;
      case 'commit':
        this.commit(decoded.endLsn, decoded.commitTime);
        return;
      default:
    }
  }

  keepalive(walEnd: bigint, replyRequested: boolean): void {
    if (walEnd > this.received) this.received = walEnd;
    if (walEnd > this.announced) this.announced = walEnd;
    if (this.ackAnnounced() || replyRequested) this.sendStatus();
  }

  /** Status update now (also the periodic one): what was received and what Redis took. */
  sendStatus(): void {
    this.stream.sendStatus(this.received, this.acknowledged);
  }

  /**
   * With nothing received waiting (no open transaction, no batch), every change
   * before the last keepalive's WAL end is invalidated: that end may be
   * acknowledged, so WAL of other tables and databases is not kept for us.
   */
  private ackAnnounced(): boolean {
    if (this.open || this.next || this.applying || this.announced <= this.acknowledged) return false;
    this.acknowledged = this.announced;
    return true;
  }

  private commit(endLsn: bigint, commitTime: number): void {
    const open = this.open;
    this.open = undefined;
    if (!open) return;
    if (!this.next) {
      this.next = { changes: open.changes, xids: [open.xid], endLsn, commitTime };
    } else {
      this.next.changes.absorb(open.changes);
      this.next.xids.push(open.xid);
      this.next.endLsn = endLsn;
      this.next.commitTime = commitTime;
    }
    this.wake?.();
  }

  private relationOf(message: Extract<PgMessage, { tag: 'relation' }>): Relation {
    const models = modelsByTable(this.core);
    const qualified = message.namespace === 'public' || message.namespace === '' ? message.name : `${message.namespace}.${message.name}`;
    const model = models.get(qualified) ?? models.get(message.name);
    return { table: model ? tableOf(model) : qualified, model, columns: message.columns };
  }

  /** Invalidates batches as they come until the signal fires; a batch cut short is not acknowledged. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const batch = this.next;
      if (!batch) {
        await new Promise<void>((resolve) => {
          const done = (): void => { this.wake = undefined; signal.removeEventListener('abort', done); resolve(); };
          this.wake = done;
          signal.addEventListener('abort', done);
        });
        continue;
      }
      this.next = undefined;
      this.applying = true;
      try {
        await this.apply(batch, signal);
      } finally {
        this.applying = false;
      }
    }
  }

  private async apply(batch: Batch, signal: AbortSignal): Promise<void> {
    const items = batch.changes.items();
    if (items.length > 0) {
      this.core.events.emit(DECODED_EVENT, { xids: batch.xids });
      if (this.options.awaitVisibility && !(await this.committedHere(batch.xids))) await this.untilVisible(batch.xids, signal);
      const done = this.core.announcementFor?.(batch.xids);
      while (!signal.aborted && !(await this.core.invalidateNow(items, done))) await pause(RETRY_MS, signal);
      if (signal.aborted) return;
    }
    // Writes of `writes: 'stream'` waiting for these transactions (write/stream-wait.ts): told before
    // the status update, whose socket write is of no concern to them.
    this.core.events.emit(STREAM_DONE_EVENT, batch.xids);
    this.acknowledged = batch.endLsn;
    this.applying = false;
    this.ackAnnounced();
    this.sendStatus();
    this.stats.events += batch.changes.events;
    this.stats.lagMs = Math.max(0, Date.now() - batch.commitTime);
    this.core.events.emit(APPLIED_EVENT, { lagMs: this.stats.lagMs, events: batch.changes.events });
    this.warnLag(this.stats.lagMs);
  }

  /**
   * Whether every transaction of the batch is a write of this process whose
   * COMMIT (or autocommitted statement) has returned (`writes: 'stream'`,
   * write/stream-wait.ts): the server answers a commit once it is visible to
   * new snapshots, so the visibility question is not needed.
   */
  private async committedHere(xids: readonly number[]): Promise<boolean> {
    const here = this.core.committedHere;
    if (!here) return false;
    const known = await here(xids);
    return xids.every((x) => known.has(String(x)));
  }

  /**
   * Waits until the transactions are visible to new snapshots: the walsender
   * sends a transaction once its commit is flushed, which is before other
   * sessions see it (see allVisible).
   */
  private async untilVisible(xids: readonly number[], signal: AbortSignal): Promise<void> {
    let wait = 1;
    while (!(await allVisible(this.control, xids))) {
      if (signal.aborted) return;
      await pause(wait, signal);
      wait = Math.min(wait * 2, 50);
    }
  }
}
