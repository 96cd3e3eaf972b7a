/**
 * The write strategy of each model, chosen once: by the installation's
 * dialect, and by whether the model has a primary key (a statement's images
 * of an update or delete are matched to rows by it).
 */
import type { Model, ModelStatic } from 'sequelize';
import { primaryKeysOf } from '../../core/sequelize-internals';
import { MariadbReturning } from './mariadb';
import { PostgresReturning } from './postgres';
import { SqliteReturning } from './sqlite';
import { PreRead, type WriteContext, type WriteStrategy } from './strategy';

function strategyOf(ctx: WriteContext, keyed: boolean): WriteStrategy {
  switch (ctx.core.dialect) {
    case 'postgres': return new PostgresReturning(ctx, keyed);
    case 'mysql':
    case 'mariadb': return new MariadbReturning(ctx, keyed);
    case 'sqlite': return new SqliteReturning(ctx, keyed);
    default: return new PreRead(ctx, keyed);
  }
}

export class WriteStrategies {
  private readonly keyed: WriteStrategy;
  private readonly keyless: WriteStrategy;
  private readonly chosen = new WeakMap<ModelStatic<Model>, WriteStrategy>();

  constructor(ctx: WriteContext) {
    this.keyed = strategyOf(ctx, true);
    this.keyless = strategyOf(ctx, false);
  }

  /** The strategy of a model's writes. */
  of(model: ModelStatic<Model>): WriteStrategy {
    let strategy = this.chosen.get(model);
    if (!strategy) {
      strategy = primaryKeysOf(model).length > 0 ? this.keyed : this.keyless;
      this.chosen.set(model, strategy);
    }
    return strategy;
  }
}
