/**
 * The Redis clients an application may hand in as `redis:`: ioredis 5 (RESP2,
 * the only protocol it speaks) and ioredis 6 (installed as the `ioredis6`
 * alias) in RESP2 and RESP3, the latter also with RESP3 reply shapes.
 */
import IORedis5 from 'ioredis';
import IORedis6 from 'ioredis6';
import type { RedisClientLike } from '../../src/index';
import { redisUrl } from './env';

export interface AppClient extends RedisClientLike {
  disconnect(): void;
}

export interface ClientVariant {
  readonly name: string;
  make(): AppClient;
}

export const CLIENT_VARIANTS: readonly ClientVariant[] = [
  { name: 'ioredis 5 RESP2', make: () => new IORedis5(redisUrl) },
  { name: 'ioredis 6 RESP2', make: () => new IORedis6(redisUrl, { protocol: 2 }) },
  { name: 'ioredis 6 RESP3', make: () => new IORedis6(redisUrl) },
  { name: 'ioredis 6 RESP3 (resp3 replies)', make: () => new IORedis6(redisUrl, { replyMapping: 'resp3' }) },
];
