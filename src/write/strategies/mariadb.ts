/**
 * MySQL and MariaDB: deletes return their rows' old states on MariaDB
 * 10.0.5+ and one-row inserts their new state on 10.5+ (images/mariadb.ts);
 * updates, and everything on MySQL, take the pre-read.
 */
import type { Model, ModelStatic, Transaction } from 'sequelize';
import { quotedTable } from '../../core/tables';
import { asBuilt } from '../rows';
import { takeImages } from '../images/returning';
import { deleteReturns, insertReturns, rewriteDelete, rewriteInsert } from '../images/mariadb';
import { rememberedRewrite } from '../images/rewrite-cache';
import type { StatementCapture } from '../images/statement';
import { PreRead, type ImagePlan, type ImageRequest } from './strategy';

export class MariadbReturning extends PreRead {
  override async images<R>(model: ModelStatic<Model>, request: ImageRequest, _userTx: Transaction | undefined, run: (plan: ImagePlan) => Promise<R>): Promise<{ result: R } | undefined> {
    if (!this.keyed || request.kind !== 'delete' || !deleteReturns(await this.ctx.serverVersion())) return undefined;
    return { result: await run({ rewrite: (sql, table) => rememberedRewrite(model, 'mysql-delete', sql, () => rewriteDelete(sql, model, table)) }) };
  }

  override async insertImages(model: ModelStatic<Model>, _tx: Transaction | undefined): Promise<Pick<StatementCapture, 'rewrite' | 'take'> | undefined> {
    if (!insertReturns(await this.ctx.serverVersion())) return undefined;
    const table = quotedTable(this.ctx.sequelize, model);
    return {
      rewrite: (sql) => rememberedRewrite(model, 'mysql-insert', sql, () => rewriteInsert(sql, model, table)),
      // As findAll builds a row (a TINYINT(1) boolean's 1 becomes true).
      take: (plan, rows) => ({ before: [], after: takeImages(plan, rows).after.map((r) => asBuilt(model, r)) }),
    };
  }
}
