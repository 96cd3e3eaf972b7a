/**
 * Every error this package throws on purpose is a `CacheopsError`, so callers
 * can tell ours from the database's or Redis's with one `instanceof`.
 */
export class CacheopsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Bad configuration or bad arguments: thrown at install time (or when a cached
 * function is declared), naming the offending key.
 *
 * @example
 * installCacheops(sequelize, { redis, profiles: { Post: { ops: 'gett' } } });
 * // CacheopsConfigError: profiles.Post.ops: unknown op 'gett' (expected get, fetch, count, ...)
 */
export class CacheopsConfigError extends CacheopsError {
  /** The configuration path that is wrong, e.g. `profiles.Post.timeout`. */
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.key = key;
  }
}

/**
 * Raised by `cache.get(key)` (and `fn.key(...).get()`) when nothing is cached.
 *
 * @example
 * try { await cacheops.cache.get('k') } catch (e) { if (e instanceof CacheMiss) ... }
 */
export class CacheMiss extends CacheopsError {
  constructor(key: string) {
    super(`cache miss: ${key}`);
  }
}

/** A value that cannot be stored (a function, a symbol, a cyclic model graph...). Nothing is stored. */
export class CacheopsSerializationError extends CacheopsError {}

/** Redis failed and `degradeOnFailure` is false (strict mode). The original error is the `cause`. */
export class CacheopsRedisError extends CacheopsError {}

/**
 * A write's invalidation did not reach Redis (emitted as `error`, never thrown:
 * the write itself has committed). Its tables are bypassed by every read until
 * a model-wide invalidation of them succeeds.
 *
 * @example
 * cacheops.on('error', (e) => metrics.increment('cacheops.invalidation_failed', { tables: e.tables.join(',') }));
 */
export class CacheopsInvalidationError extends CacheopsRedisError {
  readonly tables: readonly string[];
  constructor(tables: readonly string[], reason: string, cause?: unknown) {
    super(`invalidation of ${tables.join(', ')} failed (${reason}); these tables bypass the cache until a retry succeeds`, cause === undefined ? undefined : { cause });
    this.tables = tables;
  }
}

/**
 * The change stream cannot run: the server is not set up for it (wal_level,
 * rights to create the publication or slot), or the dialect has none. The
 * message says what is missing and the statement that fixes it.
 */
export class CacheopsStreamError extends CacheopsError {}

/**
 * The Redis user (ACL) may not run commands cacheops needs, on its keys or
 * channel: found by the check each connection makes when it becomes ready,
 * reported once (logged, and by `cacheops.ready()`). Meanwhile every cached
 * read is answered by the database, in either degrade mode (a direct
 * `cacheops.cache` call rejects with this error without `degradeOnFailure`),
 * and invalidations are still sent.
 *
 * @example
 * await cacheops.ready(); // CacheopsPermissionError: the Redis user at 127.0.0.1:6379 may not run: sunion ...
 */
export class CacheopsPermissionError extends CacheopsRedisError {
  /** The ACL names of the commands refused (`sunion`, `client|tracking`, ...). */
  readonly missing: readonly string[];
  /** Every command the configuration needs (what the user's ACL should allow). */
  readonly needed: readonly string[];
  constructor(missing: readonly string[], endpoint: string, needed: readonly string[]) {
    super(`the Redis user at ${endpoint} may not run ${missing.join(', ')} on the cacheops keys and channels; `
      + `the cache is bypassed until it may (it needs: ${needed.join(' ')}; see docs/redis-security.md)`);
    this.missing = missing;
    this.needed = needed;
  }
}
