/**
 * What the read engine asks of the consistency sampler (ops/consistency-sampler.ts,
 * `verifySampleRate`): the engine offers each hit, the sampler re-runs some of them.
 * The interface lives here so the engine does not import the ops layer; the
 * installation (install.ts) plugs the sampler in.
 */
import type { Model, ModelStatic } from 'sequelize';

export interface SampledHit {
  readonly model: ModelStatic<Model> | undefined;
  readonly hash: string;
  readonly bytes: Buffer;
  /** Date.now() when the bytes were read from Redis. */
  readonly at: number;
  readonly tier: 'near' | 'redis';
  /** Runs the query against the database and encodes its result as it would be stored. */
  readonly recompute: () => Promise<Buffer>;
}

export interface HitSampler {
  /** Whether this hit is to be checked (rolled once per hit). */
  picks(): boolean;
  /** Starts a check in the background; never throws. */
  check(hit: SampledHit): void;
  /** Resolves when no check is running (tests, shutdown). */
  idle(): Promise<void>;
}

/** The sampler of an installation without `verifySampleRate`: picks nothing. */
export const NO_SAMPLER: HitSampler = {
  picks: () => false,
  check: () => undefined,
  idle: () => Promise.resolve(),
};
