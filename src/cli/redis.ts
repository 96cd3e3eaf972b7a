/**
 * The CLI's Redis connection check. A command on a Redis that does not
 * answer would otherwise wait for the client's retries and end with a
 * `MaxRetriesPerRequestError` stack; the CLI instead waits for the connection
 * (or its first error) before any command and says in one line what failed.
 */
import { CacheopsRedisError } from '../core/errors';
import { isCluster, type RedisClient } from '../core/redis';

/** host:port (or socket path) the client connects to, for messages. */
export function redisAddress(client: RedisClient): string {
  if (isCluster(client)) {
    const nodes = (client as unknown as { startupNodes?: unknown[] }).startupNodes ?? [];
    const named = nodes.map((n) => (typeof n === 'object' && n !== null ? `${(n as { host?: string }).host ?? '127.0.0.1'}:${(n as { port?: number }).port ?? 6379}` : String(n)));
    return named.length > 0 ? `cluster ${named.join(',')}` : 'cluster';
  }
  const o = client.options;
  return o.path ? String(o.path) : `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`;
}

/** The short reason of a connection error: its code (ECONNREFUSED...) or its message. */
function reasonOf(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown; lastNodeError?: unknown };
  if (e.lastNodeError) return reasonOf(e.lastNodeError);
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  return String(e.message ?? error).split('\n')[0] ?? 'unknown error';
}

export function unreachable(client: RedisClient, reason: string): CacheopsRedisError {
  return new CacheopsRedisError(`cannot reach Redis at ${redisAddress(client)} (${reason})`);
}

/** Resolves once the client is ready; rejects with one-line CacheopsRedisError on its first error or after `timeoutMs`. */
export function ensureReachable(client: RedisClient, timeoutMs = 5000): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (client.status === 'end' || client.status === 'close') return Promise.reject(unreachable(client, 'connection closed'));
  return new Promise<void>((resolve, reject) => {
    const finish = (error?: CacheopsRedisError): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('end', onEnd);
      if (error) reject(error);
      else resolve();
    };
    const onReady = (): void => finish();
    const onError = (error: unknown): void => finish(unreachable(client, reasonOf(error)));
    const onEnd = (): void => finish(unreachable(client, 'connection closed'));
    const timer = setTimeout(() => finish(unreachable(client, `no answer in ${timeoutMs} ms`)), timeoutMs);
    client.on('ready', onReady);
    client.on('error', onError);
    client.on('end', onEnd);
  });
}

/** Errors of the Redis client (not ours): printed as one line too. */
export function isRedisClientError(error: unknown): boolean {
  const name = (error as { name?: unknown })?.name;
  const code = (error as { code?: unknown })?.code;
  return name === 'MaxRetriesPerRequestError' || name === 'ReplyError' || name === 'ClusterAllFailedError'
    || (typeof code === 'string' && /^(ECONN|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN)/.test(code));
}
