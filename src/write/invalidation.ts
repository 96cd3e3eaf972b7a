/**
 * What a write invalidates, and the one place it is sent from: every write
 * path (model writes, whole-model writes, raw SQL) ends in invalidateWrite,
 * which queues it in the write's transaction or sends it now, as one Redis
 * script call (one round trip per shard).
 */
import type { Model, ModelStatic, Transaction } from 'sequelize';
import type { CacheopsCore } from '../core/cacheops-core';
import { tableOf } from '../core/tables';
import { referencing, type Invalidation } from './foreign-keys';
import type { Row } from './rows';

export type { Invalidation };

/** A model's rows before and after a write, with what foreign-key actions did to the tables referencing it. */
export function changedRows(model: ModelStatic<Model>, before: Row[], after: Row[]): Invalidation[] {
  if (before.length + after.length === 0) return [];
  return [{ model, table: tableOf(model), rows: [...before, ...after] }, ...referencing(model, { before, after })];
}

/** A whole model, and the tables referencing it. */
export function wholeModel(model: ModelStatic<Model>): Invalidation[] {
  return [{ model, table: tableOf(model), rows: 'all' }, ...referencing(model, 'all')];
}

/**
 * Sends a write's invalidation: after the outermost commit of `transaction`,
 * or now when there is none (the write is committed by then).
 */
export async function invalidateWrite(core: CacheopsCore, items: readonly Invalidation[], transaction: Transaction | undefined): Promise<void> {
  if (items.length === 0) return;
  await core.invalidate(items, transaction);
}
