/**
 * PostgreSQL: every insert, update and delete of a model with a primary key
 * returns its rows' old and new states (images/postgres.ts); the rest
 * (models without a key, upserts and bulk inserts that may touch existing
 * rows) takes the pre-read.
 */
import type { Model, ModelStatic, Transaction } from 'sequelize';
import { primaryKeysOf } from '../../core/sequelize-internals';
import { rewritePostgres } from '../images/postgres';
import { rememberedRewrite } from '../images/rewrite-cache';
import { PreRead, type ImagePlan, type ImageRequest } from './strategy';

export class PostgresReturning extends PreRead {
  override async images<R>(model: ModelStatic<Model>, request: ImageRequest, _userTx: Transaction | undefined, run: (plan: ImagePlan) => Promise<R>): Promise<{ result: R } | undefined> {
    if (!this.keyed) return undefined;
    const { kind } = request;
    return { result: await run({ rewrite: (sql, table) => rememberedRewrite(model, `pg-${kind}`, sql, () => rewritePostgres(kind, sql, model, table, primaryKeysOf(model))) }) };
  }
}
