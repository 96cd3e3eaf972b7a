/**
 * What keeps the near cache true: Redis server-assisted client-side caching.
 *
 * Two connections of our own, beside the main one:
 * - the subscriber, SUBSCRIBEd to `__redis__:invalidate`;
 * - the reader, with `CLIENT TRACKING ON REDIRECT <subscriber id>`. Every key
 *   it reads (a value key; in insideout mode also the value's stamp keys, see
 *   lua/near_read_insideout.lua) is remembered by Redis, which sends the subscriber that
 *   key's name as soon as anything changes it: a deletion by an invalidation, a
 *   stamp deleted or a generation moved, invalidateAll's UNLINK, an overwrite,
 *   an expiry, an eviction, or the tracking table forgetting it. A FLUSHDB or
 *   FLUSHALL sends a null message: everything goes.
 *
 * Default tracking rather than BCAST: BCAST (with the value keys' prefixes)
 * sends every process a message for every value any process stores or
 * drops, while default tracking only tells a process about keys it read. The
 * benchmark measures both (`useBroadcast`, bench/near-modes.ts): the same
 * hits, and with other processes storing values this one never reads, one
 * message per foreign store under BCAST against none.
 *
 * The race between a read and an invalidation: the reply of a read (on the
 * reader) and an invalidation message (on the subscriber) travel on different
 * connections, so the message can arrive first. A read takes a ticket (the
 * message sequence number when it was sent); while reads are in flight, the
 * keys named by messages are remembered with their sequence numbers, and a
 * value is admitted only if none of its keys was named after its ticket. Any
 * message relevant to the read was produced after Redis executed the read, so
 * after it was sent: it is either seen by this check or arrives after the
 * admission and removes the entry.
 *
 * Connection loss: when either connection closes (or the subscriber misses a
 * heartbeat), every near cache is flushed and bypassed; when both are back,
 * tracking is set up again before anything is admitted. Commands that ioredis
 * resends after a reconnect belong to an older epoch and are never admitted.
 *
 * Own writes: `barrier()` PINGs the subscriber after an invalidation returned.
 * Redis queued the invalidation messages on the subscriber's connection while
 * it ran the script, so the PONG comes after them: once the barrier resolves,
 * this process's near caches no longer hold anything the write invalidated.
 *
 * Protocol: both connections speak RESP2 (ioredis 6's `protocol: 2`; ioredis 5
 * speaks nothing else), whatever the application's client speaks: Redis sends
 * a RESP3 redirect target an `invalidate` push frame instead of a message on
 * the channel, and ioredis 6 drops push frames it does not know, silently.
 *
 * Self-test: at every setup the reader reads a probe key, writes it, and the
 * subscriber PINGs: that write's invalidation must arrive before the PONG.
 * When it does not, or the server refuses tracking (no CLIENT TRACKING), the
 * near cache turns off for good with one log line; reads take the normal path.
 */
import { randomBytes } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import { defineScripts, type ScriptCommands } from '../core/redis';
import { isPermissionError, TRACKING_CHANNEL } from '../core/permissions';
import type { NearCache } from './near-cache';

const CHANNEL = TRACKING_CHANNEL;
/** While reads are in flight, how many named keys to remember before giving up on the in-flight reads. */
const RECENT_LIMIT = 50_000;
const HEARTBEAT_MS = 1000;

export type TrackedRead =
  | { readonly kind: 'value'; readonly bytes: Buffer; readonly deps: readonly string[]; readonly ttlMs: number; readonly admissible: boolean; readonly at: number }
  | { readonly kind: 'none' }
  /** Tracking is off or the read failed: take the normal path. */
  | { readonly kind: 'failed' };

interface Ticket {
  readonly epoch: number;
  readonly seq: number;
}

/** The stamps field of an insideout value ("<key>\n<stamp>\n" pairs), as keys and expected stamps. */
function parseStamps(stamps: Buffer): { keys: string[]; expected: string[] } {
  const parts = stamps.toString().split('\n');
  const keys: string[] = [];
  const expected: string[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    if (!parts[i]) continue;
    keys.push(parts[i]!);
    expected.push(parts[i + 1]!);
  }
  return { keys, expected };
}

export interface TrackerOptions {
  readonly insideout: boolean;
  readonly timeoutMs: number;
  readonly logger: (message: string, error?: unknown) => void;
  /** The installation's key prefix: the self-test's probe key is one of its `cacheops:` keys, which its ACL key pattern allows. */
  readonly probePrefix?: string;
  /**
   * Whether the Redis user may run what cacheops needs (the permission check,
   * permissions.ts): tracking is set up only then, so that a restricted user
   * is sent nothing Redis refuses; asked again at each attempt.
   */
  readonly permitted?: () => Promise<boolean>;
  /** The self-test's probe key instead (a cluster node's tracker needs one in a slot the node owns, see cluster-tracking.ts). */
  readonly probeKey?: () => string;
  /** Options of the tracking connections on top of ours (a cluster node's tracker reconnects, unlike ioredis's node connections). */
  readonly connection?: Partial<RedisOptions>;
}

/** The tracking connections' own options (ioredis 6's `protocol` and `replyMapping` are unknown to ioredis 5's types and ignored by it). */
const OWN_OPTIONS = {
  lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: 1, autoResubscribe: false, connectionName: undefined,
  protocol: 2, replyMapping: 'legacy',
};

/** A Redis reply error (the server refused the command), as opposed to a connection or timeout error. */
function refusedByServer(error: unknown): boolean {
  return error instanceof Error && error.name === 'ReplyError';
}

export class Tracker {
  private readonly reader: Redis & ScriptCommands;
  private readonly subscriber: Redis;
  private readonly caches = new Set<NearCache>();
  private on = false;
  /** The connections' client ids while tracking is set up (tests kill them to check recovery). */
  subscriberId: string | undefined;
  readerId: string | undefined;
  /** Bumped by every flush: tickets of an older epoch are never admitted. */
  private epoch = 0;
  private seq = 0;
  private inflight = 0;
  private readonly recent = new Map<string, number>();
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;
  private lastWarning = 0;
  /** Invalidation messages received (keys named, and null "flush everything" messages). */
  messages = 0;
  /** Keys those messages named. */
  keysNamed = 0;
  /** process.hrtime.bigint() when the last message was applied (the benchmark and tests measure delays with it). */
  lastMessageAt = 0n;
  flushes = 0;
  /** BCAST with these key prefixes instead of default tracking (see useBroadcast). */
  private broadcast: readonly string[] | undefined;
  /** Set when tracking could not be verified: the near cache stays off (see the top of this file). */
  private disabledBecause: string | undefined;
  /** Whether tracking was ever verified (a refusal after that is a passing trouble, not a missing feature). */
  private verified = false;
  /** The self-test in progress: its probe key and whether its invalidation arrived. */
  private probe: { readonly key: string; seen: boolean } | undefined;

  constructor(main: Redis, private readonly options: TrackerOptions) {
    const own = { ...OWN_OPTIONS, commandTimeout: options.timeoutMs, ...options.connection } as Partial<RedisOptions>;
    this.reader = defineScripts(main.duplicate(own));
    this.subscriber = main.duplicate(own);
    for (const [conn, name] of [[this.reader, 'reader'], [this.subscriber, 'subscriber']] as const) {
      conn.on('error', (error: unknown) => this.warn(`near cache: the ${name} connection failed`, error));
      conn.on('close', () => {
        if (conn === this.subscriber) this.subscriberId = undefined;
        this.down();
      });
      conn.on('ready', () => void this.up());
    }
    this.subscriber.on('messageBuffer', (_channel: Buffer, message: unknown) => this.onMessage(message));
    this.heartbeat = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Whether reads may be served from and admitted to the near caches. */
  get active(): boolean {
    return this.on;
  }

  /** Why the near cache is off for good (undefined while it is not). */
  get disabled(): string | undefined {
    return this.disabledBecause;
  }

  register(cache: NearCache): void {
    this.caches.add(cache);
  }

  private warn(message: string, error?: unknown): void {
    const now = Date.now();
    if (now - this.lastWarning < 5000 || this.closed) return;
    this.lastWarning = now;
    this.options.logger(message, error);
  }

  private flush(): void {
    this.epoch += 1;
    this.flushes += 1;
    this.recent.clear();
    for (const cache of this.caches) cache.clear();
  }

  private down(): void {
    if (this.on) this.warn('near cache: tracking connection lost; flushed, bypassed until it is back');
    this.on = false;
    this.flush();
  }

  /** Sets tracking up once both connections are ready (again). */
  private async up(): Promise<void> {
    if (this.closed || this.on || this.disabledBecause !== undefined || this.settingUp) return;
    if (this.reader.status !== 'ready' || this.subscriber.status !== 'ready') return;
    this.settingUp = true;
    const epoch = this.epoch;
    try {
      if (this.options.permitted && !(await this.options.permitted())) return;
      if (this.subscriberId === undefined) {
        const id = String(await this.subscriber.client('ID'));
        await this.subscriber.subscribe(CHANNEL);
        this.subscriberId = id;
      }
      this.readerId = String(await this.reader.client('ID'));
      await this.reader.client('TRACKING', 'OFF');
      const mode = this.broadcast ? ['BCAST', ...this.broadcast.flatMap((p) => ['PREFIX', p])] : [];
      await this.reader.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', this.subscriberId, ...mode);
      // BCAST (the benchmark's comparison) tracks the value prefixes only: the default mode's test stands for it.
      if (!this.broadcast && !(await this.selfTest())) {
        this.disable('Redis accepted client tracking but did not deliver the self-test invalidation to the tracking connection');
        return;
      }
    } catch (error) {
      // A refusal to the user is reported once by the permission check (permissions.ts), which
      // holds the cache bypassed; the heartbeat tries again once the check passes.
      if (isPermissionError(error)) return;
      // Refused otherwise at the first setup: this Redis cannot track; later, a passing trouble.
      if (!this.verified && refusedByServer(error)) this.disable(`Redis refused client tracking (${(error as Error).message})`);
      else this.warn('near cache: could not turn client tracking on; trying again', error);
      return;
    } finally {
      this.settingUp = false;
    }
    // A connection dropped meanwhile: its ready event (or the heartbeat) tries again.
    if (epoch !== this.epoch || this.closed) return;
    this.verified = true;
    this.flush();
    this.on = true;
  }

  private settingUp = false;

  /**
   * Whether an invalidation reaches the subscriber: the reader reads a probe
   * key (tracked), then writes it; Redis queues the message on the
   * subscriber's connection while it runs the write, so it must come before
   * the reply of a PING sent after the write returned.
   */
  private async selfTest(): Promise<boolean> {
    // Under the installation's key space, which a least-privilege Redis user may read and write.
    const key = this.options.probeKey?.() ?? `${this.options.probePrefix ?? ''}cacheops:near-probe:${randomBytes(8).toString('hex')}`;
    const probe = { key, seen: false };
    this.probe = probe;
    try {
      await this.reader.get(key);
      await this.reader.set(key, '1', 'PX', 60_000);
      await this.subscriber.ping();
      return probe.seen;
    } finally {
      this.probe = undefined;
      // No longer tracked once invalidated: this deletion sends nothing.
      await this.reader.del(key).catch(() => undefined);
    }
  }

  /** Turns the near cache off for good, with one log line saying why. */
  private disable(reason: string): void {
    if (this.disabledBecause !== undefined || this.closed) return;
    this.disabledBecause = reason;
    this.on = false;
    this.flush();
    this.options.logger(`near cache off: ${reason}; every read takes the normal path (see docs/clients.md)`);
    clearInterval(this.heartbeat);
    this.reader.disconnect();
    this.subscriber.disconnect();
  }

  /**
   * Switches to BCAST tracking of these key prefixes (undefined: back to
   * default tracking), flushing the near caches; resolves once tracking is
   * on again. For the benchmark's comparison of the two modes: every prefix
   * under which a value key the near caches hold can live must be given.
   */
  async useBroadcast(prefixes: readonly string[] | undefined): Promise<void> {
    this.broadcast = prefixes;
    this.on = false;
    this.flush();
    await this.up();
  }

  private onMessage(message: unknown): void {
    if (!Array.isArray(message)) {
      this.messages += 1;
      this.flush(); // FLUSHDB / FLUSHALL
      return;
    }
    let counted = false;
    for (const raw of message as Buffer[]) {
      const key = raw.toString();
      if (this.probe?.key === key) {
        this.probe.seen = true;
        continue;
      }
      if (!counted) this.messages += 1;
      counted = true;
      this.seq += 1;
      this.keysNamed += 1;
      if (this.inflight > 0) {
        if (this.recent.size >= RECENT_LIMIT) {
          // Too many to remember: no in-flight read will be admitted.
          this.epoch += 1;
          this.recent.clear();
        } else {
          this.recent.set(key, this.seq);
        }
      }
      for (const cache of this.caches) cache.drop(key);
    }
    if (counted) this.lastMessageAt = process.hrtime.bigint();
  }

  /** Reads a value on the tracked connection; `admissible` says whether it may enter a near cache. */
  async trackedGet(key: string): Promise<TrackedRead> {
    if (!this.on) return FAILED;
    const ticket: Ticket = { epoch: this.epoch, seq: this.seq };
    this.inflight += 1;
    let bytes: Buffer;
    let deps: string[];
    let ttlMs: number;
    try {
      if (this.options.insideout) {
        const reply = await this.reader.cacheopsNearReadInsideoutBuffer(key);
        if (!reply) return NONE;
        bytes = reply[0];
        ttlMs = Number(reply[2]);
        const stamps = parseStamps(reply[1]);
        deps = stamps.keys;
        if (deps.length > 0) {
          // A second round trip: the stamp keys are known only now (see near_read_insideout.lua).
          const current = await this.reader.mget(...deps);
          if (current.some((stamp, i) => stamp !== stamps.expected[i])) return NONE;
        }
      } else {
        const reply = await this.reader.cacheopsNearReadBuffer(key);
        if (!reply) return NONE;
        bytes = reply[0];
        deps = [];
        ttlMs = Number(reply[1]);
      }
    } catch (error) {
      if (!isPermissionError(error)) this.warn('near cache: a tracked read failed; the normal path answers', error);
      return FAILED;
    } finally {
      this.inflight -= 1;
    }
    const admissible = this.admissible(ticket, key, deps);
    if (this.inflight === 0) this.recent.clear();
    // PTTL -1 (no expiry) cannot happen for cacheops values; treat anything odd as "do not keep".
    return { kind: 'value', bytes, deps, ttlMs: ttlMs > 0 ? ttlMs : 0, admissible, at: Date.now() };
  }

  private admissible(ticket: Ticket, key: string, deps: readonly string[]): boolean {
    if (!this.on || ticket.epoch !== this.epoch) return false;
    if ((this.recent.get(key) ?? 0) > ticket.seq) return false;
    for (const dep of deps) if ((this.recent.get(dep) ?? 0) > ticket.seq) return false;
    return true;
  }

  /**
   * Resolves once every invalidation message Redis produced before this call
   * has been applied (see the top of this file). Never rejects: when the
   * subscriber does not answer, the near caches are flushed instead.
   */
  async barrier(): Promise<void> {
    if (!this.on) return;
    const epoch = this.epoch;
    try {
      await this.subscriber.ping();
    } catch {
      if (epoch === this.epoch) {
        this.down();
        this.subscriber.disconnect(true);
      }
    }
  }

  /** A subscriber that stopped answering is treated as lost (messages may be lost with it). */
  private async beat(): Promise<void> {
    if (this.closed) return;
    if (!this.on) await this.up(); // a setup that failed is tried again
    else await this.barrier();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.on = false;
    this.flush();
    // No QUIT: close() must be prompt even with Redis frozen, and nothing is left to flush here.
    this.reader.disconnect();
    this.subscriber.disconnect();
  }
}

const FAILED: TrackedRead = { kind: 'failed' };
const NONE: TrackedRead = { kind: 'none' };
