/**
 * sequelize-cacheops: the whole public surface.
 */
export { installCacheops, Cacheops } from './install';
export type { CacheopsEvents } from './install';
export { invalidateObj, invalidateDict, invalidateModel, invalidateAll, noInvalidation, invalidateFragment } from './api';
export { CacheopsExtension, renderAsync } from './nunjucks';
export type { AsyncRenderable } from './nunjucks';
export { FileCache } from './file-cache';
export { createAsyncLocalNamespace } from './async-namespace';
export type { AsyncLocalNamespace, ClsContext } from './async-namespace';
export type { FileCacheOptions, FileCachedOptions } from './file-cache';
export { CacheopsError, CacheopsConfigError, CacheMiss, CacheopsSerializationError, CacheopsRedisError, CacheopsInvalidationError, CacheopsStreamError, CacheopsPermissionError } from './errors';
export type { CacheopsConfig, ProfileOptions, ProfileSpec, CacheOp, OpsSpec, QueryInfo, RedisConfig, RedisClientLike } from './config';
export type { MemoryOptions } from './memory-limits';
export type { FindCacheopsOption, WriteCacheopsOption, CacheopsOption, ReadEvent, InvalidatedEvent, CacheopsStats } from './cacheops';
export type { StaleEvent } from './sampler';
export type { ChangeStreamOptions } from './stream/options';
export type { ChangeStreamStats, StreamRole } from './stream/source';
import './augment';
export type { CachedOptions, CachedFunction, CachedEntry, Sample } from './functions';
export type { ViewCacheOptions, Handler, CachedHandler, ViewDecorator } from './views';
