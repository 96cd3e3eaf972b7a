/**
 * Types the `cacheops` option on Sequelize's own option interfaces, so
 * `Post.findAll({ where, cacheops: { timeout: 60 } })` and
 * `Post.update(values, { where, cacheops: { invalidate: false } })` type-check.
 * One option type serves reads and writes, because some Sequelize options
 * (findOrCreate's) are both.
 */
import type { CacheopsOption } from './core/cacheops-core';

declare module 'sequelize/types/model' {
  interface FindOptions<TAttributes> { cacheops?: CacheopsOption }
  interface CountOptions<TAttributes> { cacheops?: CacheopsOption }
  interface AggregateOptions<T, TAttributes> { cacheops?: CacheopsOption }
  interface CreateOptions<TAttributes> { cacheops?: CacheopsOption }
  interface BulkCreateOptions<TAttributes> { cacheops?: CacheopsOption }
  interface UpsertOptions<TAttributes> { cacheops?: CacheopsOption }
  interface UpdateOptions<TAttributes> { cacheops?: CacheopsOption }
  interface TruncateOptions<TAttributes> { cacheops?: CacheopsOption }
  interface RestoreOptions<TAttributes> { cacheops?: CacheopsOption }
  interface IncrementDecrementOptions<TAttributes> { cacheops?: CacheopsOption }
  interface SaveOptions<TAttributes> { cacheops?: CacheopsOption }
  interface InstanceDestroyOptions { cacheops?: CacheopsOption }
  interface InstanceRestoreOptions { cacheops?: CacheopsOption }
}

declare module 'sequelize/types/dialects/abstract/query-interface' {
  interface QueryOptions { cacheops?: CacheopsOption }
}
