/**
 * The consistency sampler (`verifySampleRate`): a fraction of query hits,
 * near or Redis, is re-run against the database after the caller got its
 * answer, and the two are compared. A difference is emitted as `stale`.
 *
 * A difference is not always a bug: a write that committed after the hit was
 * served (or whose invalidation is still on its way) makes the database newer
 * than any cache could be. `age` (how long before the database answered the
 * check the served value was read from Redis) tells those in-flight windows
 * apart from values that stay wrong; after writes have settled, there must be
 * no stale result at all.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Model, ModelStatic } from 'sequelize';
import { decodeRaw } from '../core/serialize';
import type { HitSampler, SampledHit } from '../core/hit-sampler';

export interface StaleEvent {
  readonly model: ModelStatic<Model> | undefined;
  /** The value's key hash. */
  readonly key: string;
  /** Milliseconds from when the served value was read from Redis to when the database answered the check. */
  readonly age: number;
  /** Which tier served it. */
  readonly tier: 'near' | 'redis';
}

function sameValue(a: Buffer, b: Buffer): boolean {
  if (a.equals(b)) return true;
  const x = decodeRaw(a);
  const y = decodeRaw(b);
  return x !== undefined && y !== undefined && isDeepStrictEqual(x.value, y.value);
}

export class Sampler implements HitSampler {
  private pending = 0;
  private waiters: (() => void)[] = [];

  constructor(
    readonly rate: number,
    private readonly onStale: (event: StaleEvent) => void,
    private readonly logger: (message: string, error?: unknown) => void,
    private readonly onCheck: () => void = () => undefined,
  ) {}

  /** Whether this hit is to be checked (rolled once per hit). */
  picks(): boolean {
    return this.rate > 0 && (this.rate >= 1 || Math.random() < this.rate);
  }

  /** Starts a check in the background; never throws. */
  check(hit: SampledHit): void {
    this.pending += 1;
    void this.run(hit).finally(() => {
      this.pending -= 1;
      if (this.pending === 0) for (const w of this.waiters.splice(0)) w();
    });
  }

  private async run(hit: SampledHit): Promise<void> {
    let fresh: Buffer;
    try {
      fresh = await hit.recompute();
    } catch (error) {
      this.logger('the consistency sampler could not re-run a query', error);
      return;
    }
    const age = Date.now() - hit.at;
    this.onCheck();
    if (sameValue(fresh, hit.bytes)) return;
    this.onStale({ model: hit.model, key: hit.hash, age, tier: hit.tier });
  }

  /** Resolves when no check is running (tests, shutdown). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
