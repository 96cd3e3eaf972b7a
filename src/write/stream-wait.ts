/**
 * `writes: 'stream'`: a write learns its transaction id from its own
 * statement (stream-write.ts) and waits here until the change stream has
 * invalidated that transaction.
 *
 * The consumer says so in two ways, once Redis took the transaction's
 * invalidation (STREAM_DONE_EVENT, emitted by stream/pg-apply.ts):
 *
 * - in its own process, at once: the waiters of those ids resolve, and the
 *   ids join a bounded set of recent ones (a write whose transaction was
 *   invalidated before it began to wait finds its id there);
 * - to every process, through Redis: the script of the consumer's
 *   invalidation (lua/includes/announce.lua) also sets a short-lived mark per
 *   transaction (`stream:done:<db>:<xid>`) and PUBLISHes the ids on the
 *   database's channel, so none is announced before its invalidation took
 *   effect (a batch with nothing to invalidate in Redis is announced by a
 *   script of its own). Each process subscribes once, on a connection of its
 *   own; a waiting writer reads its mark only once that subscription is
 *   confirmed (again after every reconnection), so an announcement is either
 *   before the read (the mark is there) or after the subscription (the
 *   message arrives): none is missed.
 *
 * A wait is bounded (`changeStream.writeWaitMs`). A write whose wait ran out
 * invalidates its tables model-wide (stream-write.ts), and the stream counts
 * as late: the next writes take the synchronous path, but for one probe per
 * bound, until the stream invalidates a transaction that was waited for.
 *
 * Transaction ids: pgoutput's BEGIN carries the 32-bit xid; txid_current()
 * gives it with the epoch in the high 32 bits. Ids are compared by their low
 * 32 bits: the same low bits come back only 2^32 transactions later, far past
 * the marks' expiry and the recent set's bound.
 */
import type { Redis, RedisOptions } from 'ioredis';
import type { DoneAnnouncement } from '../core/cache-store';
import type { CacheopsCore } from '../core/cacheops-core';
import { namespace, streamDoneChannel, streamDoneKey } from '../core/keys';
import { isCluster } from '../core/redis';

/** Emitted by the consumer with the transaction ids of a batch Redis took (PostgreSQL: 32-bit xids; MariaDB: GTIDs). */
export const STREAM_DONE_EVENT = 'changeStream:done';
/**
 * Emitted by the consumer around an invalidation of everything the stream covers (a lost
 * position, a first start), `{ token, phase: 'begin' | 'end' }`: the transactions it may
 * skip committed before 'begin', so the writes of this process waiting at 'begin' are
 * covered once 'end' comes.
 */
export const STREAM_RESET_EVENT = 'changeStream:reset';
/** Emitted after each wait of a write, `{ ms, outcome, id }` (bench, tests). */
export const STREAM_WAITED_EVENT = 'changeStream:writeWaited';

export type WaitOutcome = 'done' | 'timeout';

/** How long a mark stays in Redis: far longer than any wait. */
const MARK_TTL_MS = 60_000;
/** The longest the consumer waits for replies this process awaits before it asks the server about visibility. */
const REPLY_WAIT_MS = 20;
/** The subscriber's own connection options (reconnects subscribe again themselves, see listen). */
const SUBSCRIBER_OPTIONS: Partial<RedisOptions> = { lazyConnect: false, enableOfflineQueue: true, autoResubscribe: false, maxRetriesPerRequest: 1, connectionName: undefined };
/** Reconnections to a cluster node before the subscriber moves to another node. */
const NODE_RETRIES = 3;
/** Recent ids remembered in process memory. */
const RECENT_IDS = 16_384;

/** A transaction's id as waits name it: a PostgreSQL xid's low 32 bits, or a MariaDB GTID (`0-1-42`). */
export type TransactionId = string;

/** The low 32 bits of a transaction id as txid_current() returns it (int8: text, number or bigint). */
export function xid32(value: unknown): TransactionId | undefined {
  if (value === null || value === undefined) return undefined;
  try {
    return String(BigInt(String(value)) & 0xffffffffn);
  } catch {
    return undefined;
  }
}

export class StreamWaits {
  readonly waitMs: number;
  private readonly waiters = new Map<TransactionId, Set<(outcome: WaitOutcome) => void>>();
  private readonly recent = new Set<TransactionId>();
  /** Transactions of this process whose commit has returned (see committed). */
  private readonly committedIds = new Set<TransactionId>();
  /** Transactions whose invalidation script announces them (announcementFor). */
  private readonly announced = new Set<TransactionId>();
  /** Ids whose wait ran out: the stream is late until it reaches one of them (or a probe). */
  private readonly late = new Set<TransactionId>();
  private lateSince: number | undefined;
  /** Autocommitted statements of this process awaiting their reply (see sending). */
  private inFlight = 0;
  private replyWaiters: (() => void)[] = [];
  private lastProbe = 0;
  private readonly ns: string;
  private readonly channel: string;
  private subscriber: Redis | undefined;
  /** The cluster node the subscriber last listened on (see subscribe). */
  private lastNode: Redis | undefined;
  private subscribed = false;
  private closed = false;
  private readonly onDone = (ids: readonly (number | string)[]): void => this.applied(ids.map(String));
  private readonly resets = new Map<object, TransactionId[]>();
  private readonly onReset = ({ token, phase }: { token: object; phase: 'begin' | 'end' }): void => {
    if (phase === 'begin') this.resets.set(token, [...this.waiters.keys()]);
    else {
      const covered = this.resets.get(token);
      this.resets.delete(token);
      if (covered) this.done(covered);
    }
  };

  constructor(private readonly core: CacheopsCore) {
    this.waitMs = core.config.changeStream?.writeWaitMs ?? 1000;
    this.ns = namespace(core.prefixFor([]), 0);
    this.channel = streamDoneChannel(this.ns, core.db);
    core.events.on(STREAM_DONE_EVENT, this.onDone);
    core.events.on(STREAM_RESET_EVENT, this.onReset);
    core.committedHere = (ids) => this.committedHere(ids.map(String));
    core.announcementFor = (ids) => this.announcementFor(ids.map(String));
    this.subscribe();
  }

  /** Whether a write should go through the stream now (else the synchronous path). */
  usable(): boolean {
    if (this.closed || this.core.stream === undefined || this.core.stream.stats.role === 'off') return false;
    if (this.lateSince === undefined) return true;
    const now = Date.now();
    if (now - this.lastProbe < this.waitMs) return false;
    this.lastProbe = now; // one probe per bound while late
    return true;
  }

  /**
   * Transaction `xid` of this process has committed: its statement (autocommit) or
   * its COMMIT returned, so it is visible to every new snapshot.
   */
  committed(xid: TransactionId): void {
    this.replied();
    if (this.committedIds.has(xid)) return;
    this.committedIds.add(xid);
    if (this.committedIds.size > RECENT_IDS) this.committedIds.delete(this.committedIds.values().next().value!);
  }

  /**
   * An autocommitted statement of this process is on its way: until `end`, a
   * transaction the stream brings may be this one, its reply not read yet.
   */
  sending(): () => void {
    this.inFlight += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.inFlight -= 1;
      this.replied();
    };
  }

  /**
   * Which of these ids are transactions of this process whose commit returned.
   * While statements of this process await their reply and some id is not known
   * yet, the answer waits for them, at most REPLY_WAIT_MS for the whole batch:
   * the walsender or the binlog can bring a transaction before its writer has
   * read its reply, and waiting for that reply costs less than asking the server.
   */
  async committedHere(ids: readonly TransactionId[]): Promise<ReadonlySet<TransactionId>> {
    const known = (): boolean => ids.every((x) => this.committedIds.has(x));
    const until = performance.now() + REPLY_WAIT_MS;
    while (!known()) {
      const left = until - performance.now();
      if (this.inFlight === 0 || left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, left);
        function wake(): void { clearTimeout(timer); resolve(); }
        this.replyWaiters.push(wake);
      });
    }
    return new Set(ids.filter((x) => this.committedIds.has(x)));
  }

  private replied(): void {
    const waiters = this.replyWaiters.splice(0);
    for (const wake of waiters) wake();
  }

  /** Waits until the stream invalidated transaction `xid`, at most waitMs. */
  wait(xid: TransactionId): Promise<WaitOutcome> {
    const started = performance.now();
    const report = (outcome: WaitOutcome): WaitOutcome => {
      if (this.core.events.listenerCount(STREAM_WAITED_EVENT) > 0) this.core.events.emit(STREAM_WAITED_EVENT, { ms: performance.now() - started, outcome, id: xid });
      return outcome;
    };
    if (this.recent.has(xid)) return Promise.resolve(report('done'));
    return new Promise<WaitOutcome>((resolve) => {
      const finish = (outcome: WaitOutcome): void => {
        clearTimeout(timer);
        const set = this.waiters.get(xid);
        set?.delete(finish);
        if (set?.size === 0) this.waiters.delete(xid);
        resolve(report(outcome));
      };
      const timer = setTimeout(() => {
        this.late.add(xid);
        if (this.late.size > RECENT_IDS) this.late.delete(this.late.values().next().value!);
        this.lateSince ??= Date.now();
        this.lastProbe = Date.now(); // the next probe one bound later
        finish('timeout');
      }, this.waitMs);
      let set = this.waiters.get(xid);
      if (!set) this.waiters.set(xid, (set = new Set()));
      set.add(finish);
      // The consumer in this process tells its waiters itself; another one through Redis.
      if (this.core.stream?.stats.role !== 'consumer' && this.subscribed) this.check([xid]);
    });
  }

  /** What the consumer's invalidation of these transactions tells the other processes (see the top of this file). */
  private announcementFor(xids: readonly TransactionId[]): DoneAnnouncement {
    for (const xid of xids) this.announced.add(xid);
    while (this.announced.size > RECENT_IDS) this.announced.delete(this.announced.values().next().value!);
    return this.announcement(xids);
  }

  private announcement(xids: readonly TransactionId[]): DoneAnnouncement {
    return {
      ns: this.ns, marks: xids.map((x) => streamDoneKey(this.ns, this.core.db, x)), ttlMs: MARK_TTL_MS,
      channel: this.channel, ids: xids.join(','),
    };
  }

  /**
   * Transactions the stream invalidated: their waiters resolve; those its
   * invalidation did not announce (nothing to invalidate in Redis) are announced now.
   */
  private applied(xids: readonly TransactionId[]): void {
    this.done(xids);
    const unannounced = xids.filter((x) => !this.announced.delete(x));
    if (unannounced.length === 0 || this.closed) return;
    this.core.store.announceDone(this.announcement(unannounced)).catch(() => undefined);
  }

  private done(xids: Iterable<TransactionId>): void {
    for (const xid of xids) {
      if (this.late.delete(xid)) this.lateSince = undefined;
      if (!this.recent.has(xid)) {
        this.recent.add(xid);
        if (this.recent.size > RECENT_IDS) this.recent.delete(this.recent.values().next().value!);
      }
      const set = this.waiters.get(xid);
      if (!set) continue;
      this.lateSince = undefined; // a write waited for came through in time
      for (const finish of [...set]) finish('done');
    }
  }

  /** Reads the marks of waiting transactions (only once the subscription is confirmed: see the top of this file). */
  private check(xids: readonly TransactionId[]): void {
    if (xids.length === 0) return;
    const keys = xids.map((x) => streamDoneKey(this.ns, this.core.db, x));
    this.core.redis.mget(...keys).then((marks) => {
      this.done(xids.filter((_, i) => marks[i] !== null));
    }, () => undefined);
  }

  /**
   * The subscriber connection. On a standalone server (or Sentinel), a duplicate of the main
   * connection. On a Redis Cluster, a connection of our own to one node: `Cluster#duplicate`
   * takes (startup nodes, options), so the options of a `Redis#duplicate` call are taken for
   * startup nodes and dropped; it returns a second Cluster, lazy when the application's is
   * (`lazyConnect`: it never emits 'ready', so this process never subscribed and each of its
   * writes waited out its bound), and whose own subscriber moves to another node and
   * resubscribes without a 'close' or a 'ready' on the Cluster, so the marks of the
   * transactions announced meanwhile were never read. PUBLISH (not SPUBLISH) reaches every
   * node of a cluster over the cluster bus, so a SUBSCRIBE on any node hears the consumer's
   * announcement, whichever master ran its script. The node connection is a duplicate of the
   * cluster's own to that node (its address, credentials and TLS); it retries a few times,
   * then moves to another node (the node may have left the cluster).
   */
  private subscribe(): void {
    if (this.closed) return;
    const redis = this.core.redis;
    if (!isCluster(redis)) {
      this.listen(redis.duplicate(SUBSCRIBER_OPTIONS as never) as Redis);
      return;
    }
    const nodes = redis.nodes('master');
    const node = nodes.find((n) => n !== this.lastNode) ?? nodes[0];
    if (!node) {
      // No node known yet: once the slot map is there. A lazy client (`lazyConnect`) connects
      // on its first command; it is connected now, so that waiting writes hear the stream.
      redis.once('ready', () => this.subscribe());
      if (redis.status === 'wait') redis.connect().catch(() => undefined);
      return;
    }
    this.lastNode = node;
    const client = node.duplicate({ ...SUBSCRIBER_OPTIONS, readOnly: false, retryStrategy: (times: number) => (times > NODE_RETRIES ? null : 100 * times) });
    this.listen(client);
    client.on('end', () => {
      if (this.closed || this.subscriber !== client) return;
      setTimeout(() => this.subscribe(), 100).unref();
    });
  }

  private listen(client: Redis): void {
    this.subscriber = client;
    client.on('error', () => undefined); // the main connection reports outages
    // Its reconnect timer does not keep a process alive whose Redis is down.
    client.on('reconnecting', () => (client as unknown as { reconnectTimeout?: NodeJS.Timeout | null }).reconnectTimeout?.unref());
    client.on('close', () => { if (this.subscriber === client) this.subscribed = false; });
    client.on('message', (_channel: string, message: string) => {
      this.done(message.split(',').filter((x) => x !== ''));
    });
    client.on('ready', () => {
      client.subscribe(this.channel).then(() => {
        if (this.subscriber !== client) return;
        this.subscribed = true;
        // Announcements before the subscription: the marks say.
        this.check([...this.waiters.keys()]);
      }, () => undefined);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.core.events.off(STREAM_DONE_EVENT, this.onDone);
    this.core.events.off(STREAM_RESET_EVENT, this.onReset);
    this.core.committedHere = undefined;
    this.core.announcementFor = undefined;
    this.subscriber?.disconnect();
    // Closed mid-wait: the writes invalidate their tables themselves.
    for (const set of this.waiters.values()) for (const finish of [...set]) finish('timeout');
  }
}
