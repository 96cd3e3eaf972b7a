/**
 * The near cache on a Redis Cluster. Client tracking is per node: a node
 * reports changes of the keys read on its own connections, to a redirect
 * target on itself. So each master gets a tracker of its own (tracking.ts: a
 * tracked reader and its subscriber on that node, RESP2, the self-test at
 * every setup, with a probe key in a slot the node owns), and a read goes to
 * the tracker of the master owning the key's slot (the cluster client's slot
 * map). Every key the near cache keeps for a value (the value key, and in
 * insideout mode its stamp keys) shares the value's hash tag, so one node
 * tracks them all.
 *
 * Topology: the slot map is compared with the one the trackers were set up
 * for on every `refresh` and node event of the cluster client, before every
 * barrier (own writes) and every second (when the slot map is asked again:
 * ioredis does not refresh it on its own unless `slotsRefreshInterval` is
 * set). Any change of an owner (a failover, a slot moved) flushes every near
 * cache and fails the admission of reads in flight; masters that left lose
 * their trackers, new masters get one. A tracker whose connection drops
 * flushes every near cache (tracking.ts); a tracked read that fails (MOVED
 * from a node that no longer owns the slot, among others) takes the normal
 * path and asks for the slot map again.
 *
 * Keys leaving a node by a slot migration are deleted there, which reports
 * them to that node's tracker; a master demoted while alive keeps reporting
 * the changes it replicates until the new slot map is seen.
 *
 * Near hits wait for every master's tracking: with one master's tracking
 * down, every read takes the normal path until it is back.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { NearCache } from './near-cache';
import { keySlot, SLOT_COUNT } from './key-slot';
import { Tracker, type TrackedRead, type TrackerOptions } from './tracking';

const HEARTBEAT_MS = 1000;
const FAILED: TrackedRead = { kind: 'failed' };

/** `host:port`, as the cluster client's slot map names a node. */
function nodeKey(node: Redis): string {
  return `${node.options.host ?? 'localhost'}:${node.options.port ?? 6379}`;
}

/** A node's tracking connections reconnect (ioredis's own node connections do not; it waits for MOVED). */
const NODE_CONNECTION: Partial<RedisOptions> = { retryStrategy: (times: number) => Math.min(50 * times, 1000) };

export class ClusterTracker {
  private readonly trackers = new Map<string, Tracker>();
  private readonly caches = new Set<NearCache>();
  /** The owner (`host:port`) of each slot when the trackers were last set up for the slot map. */
  private readonly owners: string[] = new Array<string>(SLOT_COUNT).fill('');
  private masters = new Set<string>();
  /** Bumped by every topology flush: reads in flight before it are not admitted. */
  private epoch = 0;
  private closed = false;
  private disabledBecause: string | undefined;
  private offLogged = false;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly onTopology = (): void => this.check();
  /** Counters of trackers already closed (their masters left). */
  private readonly past = { messages: 0, keysNamed: 0, flushes: 0 };
  /** Flushes for a change of the slot map. */
  topologyFlushes = 0;

  constructor(private readonly cluster: Cluster, private readonly options: TrackerOptions) {
    for (const event of ['ready', 'refresh', '+node', '-node'] as const) cluster.on(event, this.onTopology);
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
    this.check();
  }

  /** Whether reads may be served from and admitted to the near caches: every master's tracking is on. */
  get active(): boolean {
    if (this.closed || this.disabledBecause !== undefined || this.masters.size === 0) return false;
    for (const master of this.masters) if (this.trackers.get(master)?.active !== true) return false;
    return true;
  }

  get disabled(): string | undefined {
    return this.disabledBecause;
  }

  /** Each master's tracker, by `host:port` (tests kill their connections). */
  get nodes(): ReadonlyMap<string, Tracker> {
    return this.trackers;
  }

  get messages(): number {
    return this.past.messages + this.sum((t) => t.messages);
  }

  get keysNamed(): number {
    return this.past.keysNamed + this.sum((t) => t.keysNamed);
  }

  get flushes(): number {
    return this.past.flushes + this.sum((t) => t.flushes) + this.topologyFlushes;
  }

  get lastMessageAt(): bigint {
    let last = 0n;
    for (const t of this.trackers.values()) if (t.lastMessageAt > last) last = t.lastMessageAt;
    return last;
  }

  private sum(of: (t: Tracker) => number): number {
    let n = 0;
    for (const t of this.trackers.values()) n += of(t);
    return n;
  }

  register(cache: NearCache): void {
    this.caches.add(cache);
    for (const t of this.trackers.values()) t.register(cache);
  }

  /** Compares the cluster client's slot map with the trackers'; on any change, flushes and follows it. */
  private check(): void {
    if (this.closed || this.disabledBecause !== undefined) return;
    const slots = this.cluster.slots;
    let changed = false;
    for (let slot = 0; slot < SLOT_COUNT; slot += 1) {
      const owner = slots[slot]?.[0] ?? '';
      if (this.owners[slot] !== owner) {
        this.owners[slot] = owner;
        changed = true;
      }
    }
    if (changed) {
      this.flush();
      this.masters = new Set(this.owners.filter((o) => o !== ''));
      for (const [key, tracker] of this.trackers) if (!this.masters.has(key)) this.drop(key, tracker);
    }
    this.follow();
  }

  /** Starts a tracker for each master that has none yet (its connection may only appear with the next refresh). */
  private follow(): void {
    const missing = [...this.masters].filter((m) => !this.trackers.has(m));
    if (missing.length === 0) return;
    const nodes = this.cluster.nodes('master');
    for (const key of missing) {
      const node = nodes.find((n) => nodeKey(n) === key);
      if (!node) continue;
      const tracker = new Tracker(node, {
        ...this.options, logger: this.logger, connection: NODE_CONNECTION, probeKey: () => this.probeKeyFor(key),
      });
      for (const cache of this.caches) tracker.register(cache);
      this.trackers.set(key, tracker);
    }
  }

  private drop(key: string, tracker: Tracker): void {
    this.past.messages += tracker.messages;
    this.past.keysNamed += tracker.keysNamed;
    this.past.flushes += tracker.flushes;
    this.trackers.delete(key);
    void tracker.close();
  }

  /**
   * One "near cache off" line for the whole cluster, however many nodes fail
   * their self-test; none for a read redirected while the slot map changes
   * (the read takes the normal path and the slot map is asked again).
   */
  private readonly logger = (message: string, error?: unknown): void => {
    if (error instanceof Error && /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN) /.test(error.message)) return;
    if (message.startsWith('near cache off:')) {
      if (this.offLogged) return;
      this.offLogged = true;
    }
    this.options.logger(message, error);
  };

  /** A probe key in a slot this node owns (the hash tag is the first number that lands there). */
  private probeKeyFor(key: string): string {
    let tag = 0;
    while (tag < 100_000 && this.owners[keySlot(`{${tag}}`)] !== key) tag += 1;
    return `${this.options.probePrefix ?? ''}cacheops:near-probe:{${tag}}:${randomBytes(8).toString('hex')}`;
  }

  private flush(): void {
    this.epoch += 1;
    this.topologyFlushes += 1;
    for (const cache of this.caches) cache.clear();
  }

  /** Tracking a node could not verify turns the near cache off everywhere (the trackers logged why). */
  private beat(): void {
    if (this.closed || this.disabledBecause !== undefined) return;
    for (const [key, tracker] of this.trackers) {
      if (tracker.disabled === undefined) continue;
      this.disabledBecause = `${key}: ${tracker.disabled}`;
      this.flush();
      for (const [k, t] of this.trackers) this.drop(k, t);
      return;
    }
    this.check();
    // Asks the slot map again: a failover or a slot moved without traffic of ours is seen within a beat.
    if (this.cluster.status === 'ready') this.cluster.refreshSlotsCache();
  }

  /** Reads a value on the tracked connection of the master owning its slot. */
  async trackedGet(key: string): Promise<TrackedRead> {
    const owner = this.owners[keySlot(key)]!;
    const tracker = this.trackers.get(owner);
    if (!tracker?.active) return FAILED;
    const epoch = this.epoch;
    const read = await tracker.trackedGet(key);
    if (read.kind === 'failed') {
      if (this.cluster.status === 'ready') this.cluster.refreshSlotsCache();
      return read;
    }
    // The slot map changed meanwhile: the node that tracks it may no longer be told of its changes.
    if (read.kind === 'value' && read.admissible && (epoch !== this.epoch || this.trackers.get(owner) !== tracker)) return { ...read, admissible: false };
    return read;
  }

  /** Every master's barrier (tracking.ts), once the slot map is checked. */
  async barrier(): Promise<void> {
    this.check();
    await Promise.all([...this.trackers.values()].map((t) => t.barrier()));
  }

  /** The benchmark's BCAST comparison, on every master. */
  async useBroadcast(prefixes: readonly string[] | undefined): Promise<void> {
    await Promise.all([...this.trackers.values()].map((t) => t.useBroadcast(prefixes)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const event of ['ready', 'refresh', '+node', '-node'] as const) this.cluster.off(event, this.onTopology);
    this.flush();
    await Promise.all([...this.trackers.values()].map((t) => t.close()));
  }
}
