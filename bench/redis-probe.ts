/**
 * Looking at what the library does in Redis: which value key a query was
 * stored under (SCAN on the bench's own prefix), and how many commands one
 * operation sends on the library's connection.
 */
import IORedis from 'ioredis';
import type { Cacheops } from 'sequelize-cacheops';

/**
 * A bench installation's prefix is never used again: after invalidateAll
 * (which keeps the epochs hash: race protection), every key under it goes,
 * the change stream's marks, lease and position too. Cached values that
 * outlived invalidateAll are reported.
 */
export async function forgetPrefix(cacheops: Cacheops | undefined, prefix: string): Promise<void> {
  await cacheops?.invalidateAll().catch((e: unknown) => console.error('cleanup failed:', e));
  const redis = new IORedis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379');
  try {
    const left = (await valueKeys(redis, prefix)).size;
    if (cacheops && left > 0) console.error(`  cleanup: ${left} cached values of ${prefix} are still in Redis`);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}cacheops:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Every cached-value key (`<prefix>cacheops:{n}:q:<sha1>`) under a prefix. */
export async function valueKeys(redis: IORedis, prefix: string): Promise<Set<string>> {
  const found = new Set<string>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}cacheops:{*}:q:*`, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) found.add(k);
  } while (cursor !== '0');
  return found;
}

/** Runs fn (a first, caching call of a query) and returns the one value key it created. */
export async function keyStoredBy(redis: IORedis, prefix: string, fn: () => Promise<unknown>): Promise<string> {
  const before = await valueKeys(redis, prefix);
  await fn();
  const added = [...await valueKeys(redis, prefix)].filter((k) => !before.has(k));
  if (added.length !== 1) throw new Error(`expected the query to store exactly one value, found ${added.length}`);
  return added[0]!;
}

export interface CommandLog {
  readonly count: number;
  /** Command names in order, e.g. ['evalsha']. */
  readonly commands: readonly string[];
}

type SendCommand = (command: { name: string }, stream?: unknown) => unknown;

/**
 * The commands a client sends while fn runs, counted where ioredis hands
 * every command to the socket (scripts, pipelines and plain commands alike).
 * (MONITOR would see them too, but on a busy shared server it slows everyone
 * down and ioredis can lose its place in the monitor stream.)
 */
export async function countCommands(client: IORedis, fn: () => Promise<unknown>): Promise<CommandLog> {
  const target = client as unknown as { sendCommand: SendCommand };
  const inner = target.sendCommand;
  const commands: string[] = [];
  target.sendCommand = function sendCommand(this: unknown, command, stream) {
    commands.push(command.name.toLowerCase());
    return inner.call(this, command, stream);
  };
  try {
    await fn();
  } finally {
    target.sendCommand = inner;
  }
  return { count: commands.length, commands };
}
