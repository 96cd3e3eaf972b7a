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
 */
import type { Redis } from 'ioredis';
import { defineScripts, type ScriptCommands } from '../redis';
import { isPermissionError, TRACKING_CHANNEL } from '../permissions';
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

  constructor(main: Redis, private readonly options: TrackerOptions) {
    const own = { lazyConnect: false, enableOfflineQueue: true, commandTimeout: options.timeoutMs, maxRetriesPerRequest: 1, autoResubscribe: false, connectionName: undefined };
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
    if (this.closed || this.on || this.reader.status !== 'ready' || this.subscriber.status !== 'ready') return;
    const epoch = this.epoch;
    try {
      if (this.subscriberId === undefined) {
        const id = String(await this.subscriber.client('ID'));
        await this.subscriber.subscribe(CHANNEL);
        this.subscriberId = id;
      }
      this.readerId = String(await this.reader.client('ID'));
      await this.reader.client('TRACKING', 'OFF');
      const mode = this.broadcast ? ['BCAST', ...this.broadcast.flatMap((p) => ['PREFIX', p])] : [];
      await this.reader.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', this.subscriberId, ...mode);
    } catch (error) {
      // A refusal to the user is reported once by the permission check (permissions.ts).
      if (!isPermissionError(error)) this.warn('near cache: could not turn client tracking on', error);
      return;
    }
    // A connection dropped meanwhile: its ready event tries again.
    if (epoch !== this.epoch || this.closed) return;
    this.flush();
    this.on = true;
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
    this.messages += 1;
    if (!Array.isArray(message)) {
      this.flush(); // FLUSHDB / FLUSHALL
      return;
    }
    for (const raw of message as Buffer[]) {
      const key = raw.toString();
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
    this.lastMessageAt = process.hrtime.bigint();
  }

  /** Reads a value on the tracked connection; `admissible` says whether it may enter a near cache. */
  async read(key: string): Promise<TrackedRead> {
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
    if (!this.on || this.closed) return;
    await this.barrier();
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
