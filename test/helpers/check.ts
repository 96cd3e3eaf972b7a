/**
 * Assertions shared by the query-cache tests: plain views of results, the
 * "miss then hit, and equal to the uncached read" check, and key listing.
 */
import type { ExecutionContext } from 'ava';
import { Model, type Sequelize } from 'sequelize';
import type { FindCacheopsOption } from '../../src/index';
import IORedis from 'ioredis';
import { countSql, rawRedis, redisUrl } from './env';

/** Results with model instances replaced by their toJSON() (recursively), for deepEqual. */
export function plain(value: unknown): unknown {
  if (value instanceof Model) return value.toJSON();
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

/** What the differential helpers pass to a read: {} (cache as configured) or { cacheops: false }. */
export type ReadOptions = { cacheops?: FindCacheopsOption };

/**
 * Runs a read uncached (cacheops: false), then twice through the cache: the
 * first runs SQL, the second none, and both equal the uncached result.
 * Returns the hit's result.
 */
export async function cachedRead<T>(t: ExecutionContext, sequelize: Sequelize, read: (o: ReadOptions) => Promise<T>, label = ''): Promise<T> {
  const reference = await read({ cacheops: false });
  const miss = await countSql(sequelize, () => read({}));
  t.true(miss.sql.length > 0, `${label}: the first read runs SQL`);
  const hit = await countSql(sequelize, () => read({}));
  t.deepEqual(hit.sql, [], `${label}: the second read runs no SQL`);
  t.deepEqual(plain(miss.result), plain(reference), `${label}: a miss returns what the uncached read does`);
  t.deepEqual(plain(hit.result), plain(reference), `${label}: a hit returns what the uncached read does`);
  return hit.result;
}

/** How many SQL statements a read runs. */
export async function sqlCount(sequelize: Sequelize, read: () => Promise<unknown>): Promise<number> {
  return (await countSql(sequelize, read)).sql.length;
}

/** A Redis URL for another database of the test server. */
export function redisDbUrl(db: number): string {
  const url = new URL(redisUrl);
  return `${url.protocol}//${url.host}/${db}`;
}

/** Every Redis key matching a glob (SCAN), in the test database or another one. */
export async function keysMatching(pattern: string, db?: number): Promise<string[]> {
  const redis = db === undefined ? rawRedis() : new IORedis(redisDbUrl(db));
  try {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      out.push(...keys);
    } while (cursor !== '0');
    return out.sort();
  } finally {
    redis.disconnect();
  }
}

/** The cached value keys (`…q:<hash>`) under a prefix. */
export function valueKeys(prefix: string, db?: number): Promise<string[]> {
  return keysMatching(`${prefix.replace(/[*?[\]\\]/g, '\\$&')}cacheops:{*}:q:*`, db);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Caches a read, runs a write, and checks the write invalidated the read or
 * not as expected ('either': no expectation), and that the read is current
 * either way (equal to the same read uncached).
 */
export async function checkWrite(
  t: ExecutionContext, sequelize: Sequelize, read: (o: ReadOptions) => Promise<unknown>,
  write: () => Promise<unknown>, invalidates: boolean | 'either', label: string,
): Promise<void> {
  await read({});
  t.is(await sqlCount(sequelize, () => read({})), 0, `${label}: the read is cached before the write`);
  await write();
  const after = await countSql(sequelize, () => read({}));
  if (invalidates !== 'either') t.is(after.sql.length > 0, invalidates, `${label}: the write ${invalidates ? 'must' : 'must not'} invalidate`);
  t.deepEqual(plain(after.result), plain(await read({ cacheops: false })), `${label}: the read is current`);
}
