/**
 * PostgreSQL change stream: one consumer per database among all processes
 * reads the publication's changes from a logical replication slot (`pgoutput`)
 * and turns each committed transaction into the invalidation an in-app write
 * sends.
 *
 * The slot is read with pg_logical_slot_peek_binary_changes every
 * `pollIntervalMs` (at once again after a non-empty batch) and advanced with
 * pg_replication_slot_advance only after Redis acknowledged the batch's
 * invalidation, so a crash or a Redis outage replays from the last acknowledged
 * transaction (invalidation is idempotent). Before invalidating, the consumer
 * waits until the batch's transactions are visible to new snapshots (see
 * allVisible). The consumer holds a session advisory lock named after the slot;
 * other processes stand by and try it every `handoverMs`.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsStreamError } from '../core/errors';
import { tableOf } from '../core/tables';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { decodePgoutput, lsnText, type PgMessage } from './pgoutput';
import { TransactionChanges, type Relation } from './pg-rows';
import {
  allVisible, visibleIn, checkWalLevel, connectPg, createSlot, defaultSlot, dropSlot, ensurePublication, slotState,
  tablesWithoutFullIdentity, tryLease, type PgClient,
} from './pg-server';
import { emptyStats, everything, modelsByTable, pause, type ChangeSource, type ChangeStreamStats } from './source';

export const PG_POLL_MS = 50;
/** Changes per read (a read ends at the end of the transaction that passes it). */
const BATCH_CHANGES = 10_000;
/** How often the slot's retained WAL is looked at. */
const STATE_EVERY_MS = 1000;
/** Wait after a failed round (Redis or PostgreSQL unavailable) before the next. */
const RETRY_MS = 500;
/** Idle with more retained than this: a logical message moves the slot on. */
const HEARTBEAT_BYTES = 16 * 2 ** 20;
/** Retained past this: ask for a logged snapshot, so the restart point moves on (PostgreSQL 16+). */
const SNAPSHOT_BYTES = 2 ** 20;

/** The internal event each decoded batch emits before its visibility wait and invalidation (tests, bench). */
export const DECODED_EVENT = 'changeStream:decoded';
/** The internal event after each acknowledged batch: `{ lagMs, events }`. */
export const APPLIED_EVENT = 'changeStream:applied';

export class PgChangeStream implements ChangeSource {
  readonly stats: ChangeStreamStats = emptyStats('standby');
  /** Settles once this process knows its role (consumer or standby); rejects when the server cannot stream. */
  readonly ready: Promise<void>;
  private settle!: (error?: Error) => void;
  private readonly abort = new AbortController();
  private readonly slot: string;
  private readonly running: Promise<void>;
  private client: PgClient | undefined;
  private relations = new Map<number, Relation>();
  private lastStateAt = 0;
  private hadSlot = false;
  /** Whether pg_log_standby_snapshot() is there and permitted (PostgreSQL 16+); undefined: not tried yet. */
  private canLogSnapshot: boolean | undefined;
  private warned = { lag: false, retained: false, connection: false };

  constructor(private readonly core: CacheopsCore, private readonly options: NormalizedStreamOptions) {
    this.slot = options.slot ?? defaultSlot(core);
    this.ready = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error ? reject(error) : resolve());
    });
    this.ready.catch(() => undefined); // told through the logger too; awaiting it is optional
    this.running = this.loop();
  }

  private get log(): (message: string, error?: unknown) => void {
    return this.core.config.logger;
  }

  private async loop(): Promise<void> {
    const { signal } = this.abort;
    while (!signal.aborted) {
      try {
        await this.session();
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof CacheopsStreamError) {
          this.log(error.message);
          this.stats.role = 'off';
          this.settle(error);
          return;
        }
        if (!this.warned.connection) this.log('change stream: PostgreSQL connection failed; retrying', error);
        this.warned.connection = true;
        // The first attempt decides what changeStreamReady says; the stream keeps retrying.
        this.settle(new CacheopsStreamError(`change stream: cannot read from PostgreSQL yet (${(error as Error).message}); retrying every ${RETRY_MS} ms`, { cause: error }));
        this.stats.role = 'standby';
      } finally {
        await this.disconnect();
      }
      await pause(RETRY_MS, signal);
    }
  }

  private async disconnect(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  /** One connection: stand by until the lease is ours, then consume until closed or failed. */
  private async session(): Promise<void> {
    const { signal } = this.abort;
    const client = await connectPg(this.core, this.options, () => undefined);
    this.client = client;
    await checkWalLevel(client);
    this.warned.connection = false;
    while (!(await tryLease(client, this.slot))) {
      this.stats.role = 'standby';
      this.settle();
      await pause(this.options.handoverMs, signal);
      if (signal.aborted) return;
    }
    await ensurePublication(client, this.options.publication, this.options.createSlot, this.slot);
    await this.ensureSlot(client);
    await this.warnIdentity(client);
    this.stats.role = 'consumer';
    this.settle();
    while (!signal.aborted) {
      const changes = await this.round(client);
      if (changes < 0) await pause(RETRY_MS, signal);
      else if (changes === 0) await pause(this.options.pollIntervalMs ?? PG_POLL_MS, signal);
    }
  }

  /**
   * The slot exists and holds every change since the last acknowledged one. A slot
   * missing or lost (its WAL removed) cannot say what changed: a new one is made
   * and everything the stream covers is invalidated once.
   */
  private async ensureSlot(client: PgClient): Promise<void> {
    const state = await slotState(client, this.slot);
    if (state.exists && !state.lost) {
      this.hadSlot = true;
      return;
    }
    const lost = state.exists || this.hadSlot;
    if (lost) {
      this.log(`change stream: replication slot ${this.slot} was ${state.exists ? 'invalidated by the server (its WAL was removed)' : 'dropped'}; ` +
        'changes since the last acknowledged one are unknown: invalidating every table the stream covers and starting afresh');
      this.stats.resets += 1;
      if (state.exists) await dropSlot(client, this.slot);
    }
    await createSlot(client, this.slot, this.options.publication);
    this.hadSlot = true;
    // Changes before the slot's start are not in it (writes while no slot existed).
    while (!(await this.core.invalidateNow(everything(this.core)))) {
      if (this.abort.signal.aborted) return;
      await pause(RETRY_MS, this.abort.signal);
    }
  }

  private async warnIdentity(client: PgClient): Promise<void> {
    const partial = await tablesWithoutFullIdentity(client, [...modelsByTable(this.core).keys()]);
    if (partial.length === 0) return;
    this.log(`change stream: ${partial.join(', ')} ${partial.length === 1 ? 'has' : 'have'} no REPLICA IDENTITY FULL: ` +
      'updates by other programs invalidate the whole model. For granular invalidation: ' +
      partial.map((t) => `ALTER TABLE ${t.split('.').map((p) => `"${p}"`).join('.')} REPLICA IDENTITY FULL;`).join(' '));
  }

  /** One read of the slot: the number of changes read, -1 when they could not be acknowledged. */
  private async round(client: PgClient): Promise<number> {
    await this.lookAtSlot(client);
    let rows: Record<string, unknown>[];
    try {
      ({ rows } = await client.query(
        "SELECT data, pg_current_snapshot()::text AS snapshot FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3, 'messages', 'true')",
        [this.slot, BATCH_CHANGES, this.options.publication]));
    } catch (error) {
      const code = (error as { code?: string }).code;
      // 42704: the slot does not exist; 55000: it can no longer be read (WAL removed).
      if (code === '42704' || code === '55000') {
        await this.ensureSlot(client);
        return 0;
      }
      // 55006: another session reads the slot right now (a process without the lease): try again.
      if (code === '55006') return -1;
      throw error;
    }
    if (rows.length === 0) return 0;
    const changes = new TransactionChanges(this.core.config.maxRowsForGranularWrite);
    const xids: number[] = [];
    let endLsn: bigint | undefined;
    let commitTime = 0;
    for (const row of rows) {
      const message: PgMessage = decodePgoutput(row['data'] as Buffer);
      if (message.tag === 'relation') this.relations.set(message.relid, this.relationOf(message));
      else if (message.tag === 'begin') xids.push(message.xid);
      else if (message.tag === 'commit') {
        endLsn = message.endLsn;
        commitTime = message.commitTime;
      } else changes.addMessage(message, this.relations);
    }
    if (endLsn === undefined) return 0;
    this.core.events.emit(DECODED_EVENT, { xids });
    // The statement's snapshot (taken before it decoded) usually shows them visible already:
    // visibility never ends, so no further question is needed then.
    if (this.options.awaitVisibility) await this.untilVisible(client, xids, String(rows[0]!['snapshot']));
    const items = changes.items();
    if (items.length > 0 && !(await this.core.invalidateNow(items))) return -1;
    await client.query('SELECT pg_replication_slot_advance($1, $2::pg_lsn)', [this.slot, lsnText(endLsn)]);
    this.stats.events += changes.events;
    this.stats.lagMs = Date.now() - commitTime;
    this.core.events.emit(APPLIED_EVENT, { lagMs: this.stats.lagMs, events: changes.events });
    this.warnOnce('lag', this.stats.lagMs > this.options.lagWarningMs,
      `change stream: ${this.stats.lagMs} ms from commit to invalidation (lagWarningMs ${this.options.lagWarningMs})`);
    return rows.length;
  }

  private relationOf(message: Extract<PgMessage, { tag: 'relation' }>): Relation {
    const models = modelsByTable(this.core);
    const qualified = message.namespace === 'public' || message.namespace === '' ? message.name : `${message.namespace}.${message.name}`;
    const model = models.get(qualified) ?? models.get(message.name);
    return { table: model ? tableOf(model) : qualified, model, columns: message.columns };
  }

  /** Waits until the transactions are visible to new snapshots (they are decoded before). */
  private async untilVisible(client: PgClient, xids: readonly number[], snapshot: string): Promise<void> {
    if (visibleIn(snapshot, xids)) return;
    let wait = 1;
    while (!(await allVisible(client, xids))) {
      if (this.abort.signal.aborted) return;
      await pause(wait, this.abort.signal);
      wait = Math.min(wait * 2, 50);
    }
  }

  /** Retained WAL (stats, warning), a lost slot, and the idle heartbeat; at most every STATE_EVERY_MS. */
  private async lookAtSlot(client: PgClient): Promise<void> {
    const now = Date.now();
    if (now - this.lastStateAt < STATE_EVERY_MS) return;
    this.lastStateAt = now;
    const state = await slotState(client, this.slot);
    if (!state.exists || state.lost) {
      await this.ensureSlot(client);
      return;
    }
    this.stats.retainedBytes = state.retainedBytes;
    const retained = state.retainedBytes ?? 0;
    this.warnOnce('retained', retained > this.options.retainedWarningBytes,
      `change stream: slot ${this.slot} retains ${retained} bytes of WAL (retainedWarningBytes ${this.options.retainedWarningBytes})`);
    // WAL of other databases or unpublished tables gives the slot nothing to acknowledge: a message of ours does.
    if (retained > HEARTBEAT_BYTES) await client.query("SELECT pg_logical_emit_message(true, 'cacheops', '')");
    // Each read decodes again from the slot's restart point, which moves only past a logged
    // snapshot of running transactions (every 15 s, or at a checkpoint). PostgreSQL 16 can log
    // one on request: then a busy database costs each read less. Tried once; kept if permitted.
    if (retained > SNAPSHOT_BYTES && this.canLogSnapshot !== false) {
      this.canLogSnapshot = await client.query('SELECT pg_log_standby_snapshot()').then(() => true, () => false);
    }
  }

  private warnOnce(kind: 'lag' | 'retained', over: boolean, message: string): void {
    if (over && !this.warned[kind]) this.log(message);
    this.warned[kind] = over;
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.running;
    await this.disconnect();
    this.stats.role = 'off';
  }
}
