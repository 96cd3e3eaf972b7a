/**
 * PostgreSQL change stream: one consumer per database among all processes
 * streams the publication's changes from a logical replication slot
 * (`pgoutput`, the streaming replication protocol: pg-replication.ts) and turns
 * each committed transaction into the invalidation an in-app write sends
 * (pg-apply.ts: batches, visibility wait, acknowledgement after Redis).
 *
 * Two connections: a plain one holds the one-consumer lease (a session
 * advisory lock named after the slot; other processes stand by and try it
 * every `handoverMs`), sets up the publication and slot, answers the
 * visibility question and looks at the slot's retained WAL every second; the
 * replication one streams. The server admits one walsender per slot too: a
 * new consumer whose predecessor's walsender has not exited yet retries.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsStreamError } from '../core/errors';
import type { NormalizedStreamOptions } from '../core/stream-options';
import { RETRY_MS, StreamApplier } from './pg-apply';
import { ReplicationStream } from './pg-replication';
import {
  checkWalLevel, connectPg, createSlot, defaultSlot, dropSlot, ensurePublication, slotState,
  tablesWithoutFullIdentity, tryLease, type PgClient,
} from './pg-server';
import { emptyStats, everything, modelsByTable, pause, runSessions, warnOnce, type ChangeSource, type ChangeStreamStats } from './source';

export { APPLIED_EVENT, DECODED_EVENT } from './pg-apply';

/** How often the slot's retained WAL is looked at. */
const STATE_EVERY_MS = 1000;
/** A status update at least this often, as PostgreSQL's own subscribers send (wal_receiver_status_interval). */
const STATUS_EVERY_MS = 10_000;
/** How long a new consumer retries START_REPLICATION while the slot is still active for its predecessor's walsender. */
const SLOT_BUSY_MS = 10_000;
/** How long close() waits for the server to end the stream (it releases the slot then). */
const STOP_WAIT_MS = 2000;

/**
 * A replication connection the server refuses for good (rights, pg_hba.conf): a plain
 * error that turns the stream off. Others (too many walsenders, a restart) are retried.
 */
function refusal(error: unknown): CacheopsStreamError | undefined {
  const code = (error as { code?: string }).code;
  // 42501: the role lacks REPLICATION; 28000: no pg_hba.conf entry matches (a logical replication
  // connection is matched by its database name, not by the `replication` keyword).
  if (code !== '42501' && code !== '28000') return undefined;
  return new CacheopsStreamError(`change stream: the server refuses the replication connection (${(error as Error).message}); ` +
    'the role needs REPLICATION (ALTER ROLE ... WITH REPLICATION) and pg_hba.conf an entry for the database', { cause: error });
}

export class PgChangeStream implements ChangeSource {
  readonly stats: ChangeStreamStats = emptyStats('standby');
  /** Settles once this process knows its role (consumer or standby); rejects when the server cannot stream. */
  readonly ready: Promise<void>;
  private settle!: (error?: Error) => void;
  private readonly abort = new AbortController();
  private readonly slot: string;
  private readonly running: Promise<void>;
  private client: PgClient | undefined;
  private stream: ReplicationStream | undefined;
  private hadSlot = false;
  private warned = { lag: false, retained: false, connection: false };

  constructor(private readonly core: CacheopsCore, private readonly options: NormalizedStreamOptions) {
    this.slot = options.slot ?? defaultSlot(core);
    this.ready = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error ? reject(error) : resolve());
    });
    this.ready.catch(() => undefined); // told through the logger too; awaiting it is optional
    this.running = runSessions({
      signal: this.abort.signal, stats: this.stats, warned: this.warned, retryMs: RETRY_MS,
      session: () => this.session(), disconnect: () => this.disconnect(), settle: (error) => this.settle(error), log: this.log,
      warning: 'change stream: PostgreSQL connection failed; retrying', reading: 'from PostgreSQL',
    });
  }

  private get log(): (message: string, error?: unknown) => void {
    return this.core.config.logger;
  }

  /** The stream first (the server releases the slot), then the lease. */
  private async disconnect(): Promise<void> {
    const stream = this.stream;
    const client = this.client;
    this.stream = undefined;
    this.client = undefined;
    await stream?.stop(STOP_WAIT_MS);
    await client?.end().catch(() => undefined);
  }

  /** One connection: stand by until the lease is ours, then consume until closed or failed. */
  private async session(): Promise<void> {
    const { signal } = this.abort;
    let failed!: (error: Error) => void;
    const failure = new Promise<never>((_, reject) => { failed = reject; });
    failure.catch(() => undefined);
    const client = await connectPg(this.core, this.options, (error) => failed(error));
    this.client = client;
    await checkWalLevel(client);
    this.warned.connection = false;
    while (!(await tryLease(client, this.slot))) {
      this.stats.role = 'standby';
      this.settle();
      await pause(this.options.handoverMs, signal);
      if (signal.aborted) return;
    }
    // The replication connection (a new server process) opens while the setup runs: the
    // take-over after a consumer died waits for the slower of the two, not for both.
    let abandoned = false;
    const opening = ReplicationStream.open(this.core, this.options, (error) => failed(error)).then(async (stream) => {
      if (abandoned) {
        await stream.stop(0);
        throw new Error('abandoned');
      }
      return (this.stream = stream);
    }, (error: unknown) => {
      throw refusal(error) ?? error;
    });
    let stream: ReplicationStream;
    try {
      await ensurePublication(client, this.options.publication, this.options.createSlot, this.slot);
      await this.ensureSlot(client);
      await this.warnIdentity(client);
      stream = await opening;
    } catch (error) {
      abandoned = true;
      opening.catch(() => undefined);
      throw error;
    }
    if (signal.aborted) return;
    const applier = new StreamApplier(this.core, this.options, this.stats, client, stream,
      (lagMs) => warnOnce(this.warned, 'lag', lagMs > this.options.lagWarningMs,
        `change stream: ${lagMs} ms from commit to invalidation (lagWarningMs ${this.options.lagWarningMs})`, this.log));
    await this.startStream(client, stream, applier);
    this.stats.role = 'consumer';
    this.settle();
    await this.lookAtSlot(client);
    // The applier stops with the session: an unacknowledged batch is replayed by the next one.
    const session = new AbortController();
    const stop = (): void => session.abort();
    signal.addEventListener('abort', stop);
    const applying = applier.run(session.signal);
    const timers = [
      setInterval(() => applier.sendStatus(), STATUS_EVERY_MS),
      setInterval(() => { this.lookAtSlot(client).catch((error: Error) => failed(error)); }, STATE_EVERY_MS),
    ];
    for (const timer of timers) timer.unref();
    const aborted = new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve())));
    try {
      await Promise.race([
        stream.done.then(() => { throw new Error('the server ended the replication stream'); }),
        failure,
        aborted,
        // It returns only when the session ends; before that, only by failing (a visibility question on a lost connection).
        applying.then(() => { throw new Error('the change stream stopped invalidating'); }),
      ]);
    } finally {
      for (const timer of timers) clearInterval(timer);
      signal.removeEventListener('abort', stop);
      session.abort();
      await applying;
    }
  }

  /**
   * START_REPLICATION: a missing or lost slot is made anew (ensureSlot), a slot
   * still active for the previous consumer's walsender (it has not noticed its
   * client is gone yet) is tried again for a while.
   */
  private async startStream(client: PgClient, stream: ReplicationStream, applier: StreamApplier): Promise<void> {
    const since = Date.now();
    let wait = 10;
    for (;;) {
      try {
        await stream.start(this.slot, this.options.publication, applier);
        return;
      } catch (error) {
        const code = (error as { code?: string }).code;
        // 42704: the slot does not exist; 55000: it can no longer be read (WAL removed).
        if (code === '42704' || code === '55000') await this.ensureSlot(client);
        // 55006: active for another process's walsender.
        else if (code !== '55006' || Date.now() - since > SLOT_BUSY_MS || this.abort.signal.aborted) throw error;
        // The predecessor's walsender exits within milliseconds of noticing its client is gone: short steps.
        await pause(wait, this.abort.signal);
        wait = Math.min(wait + 10, 50);
      }
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

  /** Retained WAL (stats, warning); a slot gone or lost ends the session (the next one makes it anew). */
  private async lookAtSlot(client: PgClient): Promise<void> {
    const state = await slotState(client, this.slot);
    if (!state.exists || state.lost) throw new Error(`replication slot ${this.slot} is ${state.exists ? 'lost' : 'gone'}`);
    this.stats.retainedBytes = state.retainedBytes;
    const retained = state.retainedBytes ?? 0;
    warnOnce(this.warned, 'retained', retained > this.options.retainedWarningBytes,
      `change stream: slot ${this.slot} retains ${retained} bytes of WAL (retainedWarningBytes ${this.options.retainedWarningBytes})`, this.log);
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.running;
    await this.disconnect();
    this.stats.role = 'off';
  }
}
