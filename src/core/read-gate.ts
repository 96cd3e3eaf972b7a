/**
 * The read gate: the one place that decides whether a cached read may use
 * the cache now, and whether what it computes may be stored. Every kind of
 * cached read asks it (queries, gets and counts through planParsed,
 * `cachedAs` / `cached` functions and their entries, views, fragments), and
 * the process-memory tiers (`localGet`, the near cache) are only reached
 * through a read it admitted, so none of them can disagree with another about
 * when the cache is safe.
 *
 * The cache is not used (the database answers) when the installation is
 * disabled or closed, inside a transaction that has written (its reads must
 * see its own writes), while outage recovery holds dirty tables (an
 * invalidation did not reach Redis: any cached value may be stale), or when
 * a condition of Redis says so. Inside a transaction that has not written,
 * the cache is read but nothing is stored (the transaction may see a state
 * no other reader does).
 *
 * Conditions of Redis plug in with `consult`: each says what it allows now
 * ('bypass' for a slow Redis; 'read-only' for a state in which reads may go
 * on but stores may not), and the most restrictive answer wins.
 */
import type { Transaction } from 'sequelize';

/** What a condition of Redis allows now. */
export type CacheAccess = 'read-write' | 'read-only' | 'bypass';

declare const admitted: unique symbol;

/** The gate's answer for one read: the cache may be read; `canStore` says whether a miss may be stored. */
export interface ReadAdmission {
  readonly canStore: boolean;
  /** Only the gate makes these. */
  readonly [admitted]: true;
}

/** A condition the gate consults on every read; called often, so it must be cheap (read a field). */
export type GateCondition = () => CacheAccess;

/** What the gate needs of its installation (CacheopsCore). */
export interface GateHost {
  readonly config: { readonly enabled: boolean };
  readonly closed: boolean;
  readonly transactions: {
    current(options: { transaction?: Transaction | null } | undefined): Transaction | undefined;
    hasWritten(t: Transaction): boolean;
  };
  readonly outage: { readonly bypassing: boolean };
}

const READ_WRITE = { canStore: true } as ReadAdmission;
const READ_ONLY = { canStore: false } as ReadAdmission;

export class ReadGate {
  private readonly conditions: GateCondition[] = [];

  constructor(private readonly host: GateHost) {}

  /** Adds a condition consulted by every read from now on; returns a function that removes it. */
  consult(condition: GateCondition): () => void {
    this.conditions.push(condition);
    return () => {
      const i = this.conditions.indexOf(condition);
      if (i >= 0) this.conditions.splice(i, 1);
    };
  }

  /**
   * May a read in this call's transaction (explicit, or the CLS one when the
   * options do not say) use the cache now? undefined: run it uncached.
   */
  admit(options?: { transaction?: Transaction | null }): ReadAdmission | undefined {
    const host = this.host;
    if (!host.config.enabled || host.closed) return undefined;
    const t = host.transactions.current(options);
    if (t !== undefined && host.transactions.hasWritten(t)) return undefined;
    if (host.outage.bypassing) return undefined;
    let canStore = t === undefined;
    for (const condition of this.conditions) {
      const access = condition();
      if (access === 'bypass') return undefined;
      if (access === 'read-only') canStore = false;
    }
    return canStore ? READ_WRITE : READ_ONLY;
  }
}
