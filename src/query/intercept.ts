/**
 * Where reads are intercepted, and why there.
 *
 * Sequelize hooks cannot skip a query (a `beforeFind` hook can change options
 * but not return rows), so reads are caught one level below the model API, on
 * this Sequelize instance's QueryInterface:
 *
 * - `select(model, table, options)` is what findAll runs after scopes, hooks,
 *   include expansion and `tableNames` are settled; findOne, findByPk, reload,
 *   findAndCountAll's rows and every association getter go through findAll.
 *   What happens after it (separate includes, afterFind hooks, rejectOnEmpty)
 *   still runs on a hit, exactly as on a miss.
 * - `rawSelect(table, options, selector, model)` is what count, max, min, sum
 *   and aggregate run.
 *
 * The final SQL is generated once, hashed into the key, and reused for the
 * database on a miss, so the key is exactly what the database would run.
 */
import { DataTypes, QueryTypes, Utils, type Model, type ModelStatic } from 'sequelize';
import type { CacheopsCore, FindCacheopsOption } from '../cacheops';
import type { CacheOp } from '../config';
import { decodeRaw, encodeRaw } from '../serialize';
import { selectDependencies, type FinalDependencies } from './dependencies';
import { queryHash } from './key';
import { fromCacheable, toCacheable, type SelectOptions } from './rehydrate';

interface QueryInterfaceLike {
  sequelize: { query(sql: string, options: unknown): Promise<unknown> };
  queryGenerator: { selectQuery(table: unknown, options: unknown, model: unknown): string };
  select(model: ModelStatic<Model>, tableName: unknown, options: Record<string, unknown>): Promise<unknown>;
  rawSelect(tableName: unknown, options: Record<string, unknown>, selector: string, model?: ModelStatic<Model>): Promise<unknown>;
}

type ReadOptions = Record<string, unknown> & SelectOptions & {
  cacheops?: FindCacheopsOption;
  where?: unknown;
  include?: readonly never[];
  bind?: unknown;
  replacements?: unknown;
  nest?: boolean;
};

/**
 * Generates the SQL and runs it through the cache when the plan allows.
 * The dependencies are taken before the SQL is generated: the generator
 * rewrites `options.where` into SQL text.
 */
async function cachedSelect(
  core: CacheopsCore,
  model: ModelStatic<Model>,
  op: CacheOp,
  options: ReadOptions,
  generate: () => string,
  shape: string,
  run: (sql: string) => Promise<unknown>,
): Promise<unknown> {
  const plan = core.planRead(model, op, options as never);
  if (!plan) return run(generate());
  // The generator rewrites options.where into SQL text: keep what the dependencies need.
  const saved = {
    where: options.where, include: options.include, raw: options.raw,
    having: options['having'], order: options['order'], limit: options['limit'], offset: options['offset'],
  };
  const sql = generate();
  // Worked out only on a miss (a hit needs none of it), or up front for a prefix function.
  let final: FinalDependencies | undefined | null = null;
  const finalDeps = (): FinalDependencies | undefined => {
    if (final === null) {
      final = selectDependencies({
        sequelize: core.sequelize, dialect: core.dialect, maxInListLength: core.config.maxInListLength, mayCache: core.mayCache,
      }, model, saved)?.withTablesOf(sql);
    }
    return final;
  };
  const hash = queryHash({
    dialect: core.dialect,
    ...(plan.profile.dbAgnostic ? {} : { db: core.db }),
    sql,
    bind: options.bind,
    replacements: options.replacements,
    shape,
  });
  const prefix = typeof core.config.prefix === 'string' ? core.config.prefix : core.prefixFor((finalDeps()?.deps ?? []).map((d) => d.table));
  return core.read({
    prefix,
    hash,
    deps: () => finalDeps()?.deps,
    timeout: plan.timeout,
    lock: plan.lock,
    canStore: plan.canStore,
    compute: () => run(sql),
    refineDeps: (value) => finalDeps()!.refine(value),
    encode: (value) => encodeRaw(toCacheable(value, options)),
    decode: (bytes) => {
      const raw = decodeRaw(bytes);
      return raw && { value: fromCacheable(raw.value, model, options) };
    },
  }, { model, op }, op === 'get' && plan.profile.localGet);
}

function parseAggregate(result: unknown, dataType: unknown): unknown {
  if (result === null || result === undefined || !dataType) return result;
  if (dataType instanceof DataTypes.DECIMAL || dataType instanceof DataTypes.FLOAT) return parseFloat(result as string);
  if (dataType instanceof DataTypes.INTEGER || dataType instanceof DataTypes.BIGINT) return parseInt(result as string, 10);
  if (dataType instanceof DataTypes.DATE && !(result instanceof Date)) return new Date(result as string);
  return result;
}

/** Patches the read methods of this Sequelize's QueryInterface. */
export function interceptReads(core: CacheopsCore): void {
  const qi = core.sequelize.getQueryInterface() as unknown as QueryInterfaceLike;
  const originalSelect = qi.select;
  const originalRawSelect = qi.rawSelect;

  qi.select = async function select(this: QueryInterfaceLike, model, tableName, optionsArg) {
    if (!core.config.enabled || optionsArg['cacheops'] === false) return originalSelect.call(this, model, tableName, optionsArg);
    const options: ReadOptions = { ...optionsArg, type: QueryTypes.SELECT, model };
    const op: CacheOp = options.plain ? 'get' : 'fetch';
    const shape = `select:${options.raw ? 'r' : 'i'}${options.plain ? 'p' : ''}${options.nest ? 'n' : ''}`;
    return cachedSelect(core, model, op, options, () => this.queryGenerator.selectQuery(tableName, options, model), shape,
      (sql) => this.sequelize.query(sql, options));
  };

  qi.rawSelect = async function rawSelect(this: QueryInterfaceLike, tableName, optionsArg, selector, model) {
    if (!core.config.enabled || !model || optionsArg['cacheops'] === false) return originalRawSelect.call(this, tableName, optionsArg, selector, model);
    const options = Utils.cloneDeep(optionsArg) as ReadOptions & { plain?: boolean; raw?: boolean; dataType?: unknown };
    options.raw ??= true;
    options.plain ??= true;
    (options as Record<string, unknown>)['type'] ??= QueryTypes.SELECT;
    const op: CacheOp = selector === 'count' ? 'count' : 'aggregate';
    // The cached value is the query's raw result; selecting and parsing stay outside, as in Sequelize.
    const data = await cachedSelect(core, model, op, options, () => this.queryGenerator.selectQuery(tableName, options, model),
      `raw:${options.plain ? 'p' : ''}`, (sql) => this.sequelize.query(sql, options));
    if (!options.plain) return data;
    const result = data ? (data as Record<string, unknown>)[selector] : null;
    return parseAggregate(result, options.dataType);
  };
}
