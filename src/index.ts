/**
 * sequelize-cacheops: the whole public surface.
 */
export { installCacheops, Cacheops } from './install';
export type { CacheopsEvents } from './install';
export { invalidateObj, invalidateDict, invalidateModel, invalidateAll, noInvalidation, invalidateFragment } from './api';
export { CacheopsExtension, renderAsync } from './features/nunjucks';
export type { AsyncRenderable } from './features/nunjucks';
export { FileCache } from './features/file-cache';
export { createAsyncLocalNamespace } from './features/async-namespace';
export type { AsyncLocalNamespace, ClsContext } from './features/async-namespace';
export type { FileCacheOptions, FileCachedOptions } from './features/file-cache';
export { CacheopsError, CacheopsConfigError, CacheMiss, CacheopsSerializationError, CacheopsRedisError, CacheopsInvalidationError, CacheopsStreamError, CacheopsPermissionError } from './core/errors';
export type { CacheopsConfig, ProfileOptions, ProfileSpec, CacheOp, OpsSpec, QueryInfo, RedisConfig, RedisClientLike, WriteMode } from './core/config';
export type { MemoryOptions } from './core/memory-limits';
export type { FindCacheopsOption, WriteCacheopsOption, CacheopsOption, ReadEvent, InvalidatedEvent, CacheopsStats } from './core/cacheops-core';
export type { StaleEvent } from './ops/consistency-sampler';
export type { ChangeStreamOptions } from './core/stream-options';
export type { ChangeStreamStats, StreamRole } from './stream/source';
import './augment';
export type { CachedOptions, CachedFunction, CachedEntry, Sample } from './features/functions';
export type { ViewCacheOptions, Handler, CachedHandler, ViewDecorator } from './features/views';
