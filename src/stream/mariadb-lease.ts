/**
 * One binlog consumer per database among all processes: a Redis lease with a
 * fencing token. The holder renews it; a standby takes it once it expired. The
 * acknowledgement of a position is a script that refuses a token that is no
 * longer the lease's, so a consumer that lost its lease (paused, partitioned)
 * cannot move the position back or past what the new holder invalidated.
 */
import type { RedisClient } from '../core/redis';
import { namespace, streamFenceKey, streamLeaseKey, streamPositionKey } from '../core/keys';

/*
 * KEYS[1] lease key   N stream:lease:<db>
 * ARGV[1] token       ARGV[2] time to live (ms)
 * Renews the lease if it is still the token's: 1, else 0.
 */
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;

/*
 * KEYS[1] lease key   N stream:lease:<db>
 * KEYS[2] position    N stream:pos:<db>
 * ARGV[1] token       ARGV[2] the position (JSON)
 * Stores the position if the token still holds the lease: 1, else 0.
 */
const ACK = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) return 1 end return 0`;

/*
 * KEYS[1] lease key   N stream:lease:<db>
 * ARGV[1] token
 * Gives the lease up if it is still the token's.
 */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** A stored position: MariaDB's GTID state and/or a file and position. */
export interface StoredPosition {
  readonly gtid?: string;
  readonly file: string;
  readonly position: number;
}

export class StreamLease {
  private readonly lease: string;
  private readonly fence: string;
  private readonly positionKey: string;
  private token: string | undefined;

  constructor(private readonly redis: RedisClient, prefix: string, db: string, private readonly ttlMs: number) {
    // One hash tag ({0}) for the three keys: the scripts touch two of them at once.
    const ns = namespace(prefix, 0);
    this.lease = streamLeaseKey(ns, db);
    this.fence = streamFenceKey(ns, db);
    this.positionKey = streamPositionKey(ns, db);
  }

  get held(): boolean {
    return this.token !== undefined;
  }

  /** Takes the lease when free: true when this process holds it now. */
  async acquire(): Promise<boolean> {
    const token = `${await this.redis.incr(this.fence)}:${process.pid}`;
    const ok = await this.redis.set(this.lease, token, 'PX', this.ttlMs, 'NX');
    this.token = ok === 'OK' ? token : undefined;
    return this.held;
  }

  /** Renews the lease; false when it was lost (expired and taken, or deleted). */
  async renew(): Promise<boolean> {
    if (!this.token) return false;
    const ok = await this.redis.eval(RENEW, 1, this.lease, this.token, String(this.ttlMs));
    if (Number(ok) !== 1) this.token = undefined;
    return this.held;
  }

  /** Stores the position after its invalidation succeeded; false when the lease is no longer ours. */
  async acknowledge(position: StoredPosition): Promise<boolean> {
    if (!this.token) return false;
    const ok = await this.redis.eval(ACK, 2, this.lease, this.positionKey, this.token, JSON.stringify(position));
    if (Number(ok) !== 1) this.token = undefined;
    return this.held;
  }

  async position(): Promise<StoredPosition | undefined> {
    const text = await this.redis.get(this.positionKey);
    return text ? JSON.parse(text) as StoredPosition : undefined;
  }

  /** Forgets the stored position (`cacheops stream drop`): the next consumer starts afresh. */
  async forget(): Promise<boolean> {
    return (await this.redis.del(this.positionKey)) > 0;
  }

  /** The token holding the lease now (any process), or null. */
  async holder(): Promise<string | null> {
    return this.redis.get(this.lease);
  }

  async release(): Promise<void> {
    const token = this.token;
    this.token = undefined;
    if (token) await this.redis.eval(RELEASE, 1, this.lease, token).catch(() => undefined);
  }
}
