/**
 * Runs the permission check (permissions.ts) for an installation: once when
 * it is created (the check goes out first on the connection, ahead of any
 * read), again each time the connection becomes ready, and when Redis refuses
 * a call to the user. A refusal is logged once, in one line, and holds the
 * cache bypassed (CacheStore.refusal) until a check passes again.
 */
import type { CacheStore } from './cache-store';
import type { CacheopsPermissionError } from './errors';
import { checkPermissions, type Features } from './permissions';
import { endpointOf, type RedisClient } from './redis';

export class PermissionWatch {
  private running: Promise<void> | undefined;
  private again = false;
  private settled = false;
  private readonly waiters: { resolve: () => void; reject: (error: CacheopsPermissionError) => void }[] = [];
  private closed = false;

  constructor(
    private readonly client: RedisClient,
    private readonly store: CacheStore,
    private readonly features: Features,
    private readonly logger: (message: string, error?: unknown) => void,
  ) {
    client.on('ready', this.onReady);
    this.check();
  }

  /** A check in flight when the connection becomes ready goes out on it: no second one. */
  private readonly onReady = (): void => {
    if (!this.running) this.check();
  };

  /** Checks now (or once more after the check in flight). */
  check(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.check();
      }
    });
  }

  private async run(): Promise<void> {
    const result = await checkPermissions(this.client, this.features, endpointOf(this.client));
    if (this.closed) return;
    if (result.kind === 'unknown') {
      // Redis did not answer (the breaker's business) or cannot tell: the next ready event asks again.
      this.settle();
      return;
    }
    const before = this.store.refusal;
    if (result.kind === 'missing') {
      this.store.refusal = result.error;
      if (!before || before.message !== result.error.message) this.logger(`cacheops: ${result.error.message}`, result.error);
    } else {
      this.store.refusal = undefined;
      if (before) this.logger('cacheops: the Redis user may now run every command cacheops needs; caching resumed');
    }
    this.settle();
  }

  private settle(): void {
    this.settled = true;
    for (const w of this.waiters.splice(0)) {
      if (this.store.refusal) w.reject(this.store.refusal);
      else w.resolve();
    }
  }

  /**
   * Resolves once the first check is done and passed (or could not be made:
   * Redis did not answer); rejects with the CacheopsPermissionError of a check that did not pass.
   */
  ready(): Promise<void> {
    if (this.settled) return this.store.refusal ? Promise.reject(this.store.refusal) : Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  close(): void {
    this.closed = true;
    this.client.off('ready', this.onReady);
  }
}
