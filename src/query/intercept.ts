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
import type { CacheopsCore, FindCacheopsOption, ReadDecision } from '../core/cacheops-core';
import type { CacheOp } from '../core/config';
import type { MissDependencies } from '../core/read-plan';
import { selectDependencies, type FinalDependencies } from './dependencies';
import { queryHash } from './key';
import type { SelectOptions } from './rehydrate';
import { SelectCodec } from './select-codec';
import { captureOf, type RawShape, type SelectCapture } from './capture';
import { queryInterfaceOf, type QueryInterfaceInternals } from '../core/sequelize-internals';

type QueryInterfaceLike = QueryInterfaceInternals;

export type ReadOptions = Record<string, unknown> & SelectOptions & {
  cacheops?: FindCacheopsOption;
  where?: unknown;
  include?: readonly never[];
  bind?: unknown;
  replacements?: unknown;
  nest?: boolean;
};

/** What the dependencies are worked out from: the options as they were before the SQL was generated. */
type DependencyOptions = Parameters<typeof selectDependencies>[2];

/**
 * A select with its SQL generated: everything a read of it needs that does
 * not change from one call to the next. The fast path (fast-path.ts) keeps
 * these and reuses them for calls with the same options.
 */
export class PreparedSelect {
  private final: FinalDependencies | undefined | null = null;
  private readonly hashes: { db?: string; agnostic?: string } = {};
  /** The codec of the last model class read with (a scoped model is a new class per `scope()` call). */
  private codec: SelectCodec | undefined;
  private missDeps: MissDependencies<unknown> | undefined;

  private constructor(
    readonly model: ModelStatic<Model>,
    readonly op: CacheOp,
    readonly shape: string,
    readonly sql: string,
    /** The options the SQL was generated with (after generating): the query runs with them, results are built with them. */
    readonly options: ReadOptions,
    private readonly before: DependencyOptions,
  ) {}

  /**
   * Generates the SQL. The dependencies' inputs are kept first: the generator
   * rewrites `options.where` into SQL text.
   */
  static generate(model: ModelStatic<Model>, op: CacheOp, shape: string, options: ReadOptions, generate: () => string): PreparedSelect {
    const before: DependencyOptions = {
      where: options.where, include: options.include, raw: options.raw,
      having: options['having'], order: options['order'], limit: options['limit'], offset: options['offset'],
    };
    const sql = generate();
    return new PreparedSelect(model, op, shape, sql, options, before);
  }

  /** The dependencies, worked out once (a hit needs none of them). undefined: must not be cached. */
  dependencies(core: CacheopsCore): FinalDependencies | undefined {
    if (this.final === null) {
      this.final = selectDependencies({
        sequelize: core.sequelize, dialect: core.dialect, maxInListLength: core.config.maxInListLength, mayCache: core.mayCache,
      }, this.model, this.before)?.withTablesOf(this.sql);
    }
    return this.final;
  }

  /** The dependencies as a read plan takes them: worked out on the first miss, narrowed by the result. */
  missDependencies(core: CacheopsCore): MissDependencies<unknown> {
    return this.missDeps ??= {
      dependencies: () => this.dependencies(core)?.deps,
      refine: (value) => this.dependencies(core)!.refine(value),
    };
  }

  /** The codec of results built with this model class and the prepared options. */
  codecFor(model: ModelStatic<Model>): SelectCodec {
    const codec = this.codec;
    if (codec !== undefined && codec.model === model) return codec;
    return (this.codec = new SelectCodec(model, this.options));
  }

  hash(core: CacheopsCore, dbAgnostic: boolean): string {
    const slot = dbAgnostic ? 'agnostic' : 'db';
    return this.hashes[slot] ??= queryHash({
      dialect: core.dialect,
      ...(dbAgnostic ? {} : { db: core.db }),
      sql: this.sql,
      bind: this.options.bind,
      replacements: this.options.replacements,
      shape: this.shape,
    });
  }
}

/**
 * Reads a prepared select through the cache; the result is built with the
 * prepared options. `model` is the class of this call (a scoped model is a
 * new class per `scope()` call).
 */
export function readPrepared(
  core: CacheopsCore,
  prepared: PreparedSelect,
  decision: ReadDecision,
  model: ModelStatic<Model>,
  run: (sql: string) => Promise<unknown>,
): Promise<unknown> {
  const { op, sql } = prepared;
  const { profile } = decision;
  const prefix = typeof core.config.prefix === 'string' ? core.config.prefix
    : core.prefixFor((prepared.dependencies(core)?.deps ?? []).map((d) => d.table));
  return core.readCached({
    prefix,
    hash: prepared.hash(core, profile.dbAgnostic),
    deps: prepared.missDependencies(core),
    timeout: decision.timeout,
    staleWhileRevalidate: profile.staleWhileRevalidate,
    lock: decision.lock,
    admission: decision.admission,
    codec: prepared.codecFor(model),
    near: profile.near ? profile : undefined,
    localGet: op === 'get' && profile.localGet,
    sample: true,
    op,
    model,
  }, () => run(sql));
}

/** Generates the SQL and runs it through the cache when the read decision allows. */
async function cachedSelect(
  core: CacheopsCore,
  model: ModelStatic<Model>,
  op: CacheOp,
  options: ReadOptions,
  generate: () => string,
  shape: string,
  run: (sql: string) => Promise<unknown>,
  capture?: SelectCapture,
  raw?: RawShape,
): Promise<unknown> {
  const decision = core.planRead(model, op, options as never);
  if (!decision && !capture) return run(generate());
  const prepared = PreparedSelect.generate(model, op, shape, options, generate);
  if (raw) capture?.offerRaw(model, prepared, raw);
  else capture?.offer(model, prepared);
  if (!decision) return run(prepared.sql);
  return readPrepared(core, prepared, decision, model, run);
}

/** What rawSelect returns for the rows its query gave (the row itself unless plain; else its selected column, parsed). */
export function rawResult(data: unknown, shape: RawShape): unknown {
  if (!shape.plain) return data;
  const result = data ? (data as Record<string, unknown>)[shape.selector] : null;
  return parseAggregate(result, shape.dataType);
}

/** How rawSelect parses an aggregate of a data type. */
type AggregateParse = 'float' | 'int' | 'date' | 'none';

function aggregateParseOf(dataType: unknown): AggregateParse {
  if (dataType instanceof DataTypes.DECIMAL || dataType instanceof DataTypes.FLOAT) return 'float';
  if (dataType instanceof DataTypes.INTEGER || dataType instanceof DataTypes.BIGINT) return 'int';
  if (dataType instanceof DataTypes.DATE) return 'date';
  return 'none';
}

/**
 * Each data type's parse, worked out once: Sequelize's data type classes are
 * proxies, so every `instanceof` on them goes through a trap, and a count hit
 * made up to four of them.
 */
const aggregateParses = new WeakMap<object, AggregateParse>();

function parseAggregate(result: unknown, dataType: unknown): unknown {
  if (result === null || result === undefined || !dataType) return result;
  let parse: AggregateParse;
  if (typeof dataType === 'object' || typeof dataType === 'function') {
    const known = aggregateParses.get(dataType);
    parse = known ?? aggregateParseOf(dataType);
    if (known === undefined) aggregateParses.set(dataType, parse);
  } else {
    parse = aggregateParseOf(dataType);
  }
  if (parse === 'float') return parseFloat(result as string);
  if (parse === 'int') return parseInt(result as string, 10);
  if (parse === 'date' && !(result instanceof Date)) return new Date(result as string);
  return result;
}

/** Patches the read methods of this Sequelize's QueryInterface. */
export function interceptReads(core: CacheopsCore): void {
  const qi = queryInterfaceOf(core.sequelize);
  const originalSelect = qi.select;
  const originalRawSelect = qi.rawSelect;

  qi.select = async function select(this: QueryInterfaceLike, model, tableName, optionsArg) {
    if (!core.config.enabled || optionsArg['cacheops'] === false) return originalSelect.call(this, model, tableName, optionsArg);
    const options: ReadOptions = { ...optionsArg, type: QueryTypes.SELECT, model };
    const op: CacheOp = options.plain ? 'get' : 'fetch';
    const shape = `select:${options.raw ? 'r' : 'i'}${options.plain ? 'p' : ''}${options.nest ? 'n' : ''}`;
    return cachedSelect(core, model, op, options, () => this.queryGenerator.selectQuery(tableName, options, model), shape,
      (sql) => this.sequelize.query(sql, options), captureOf(options as Record<PropertyKey, unknown>));
  };

  qi.rawSelect = async function rawSelect(this: QueryInterfaceLike, tableName, optionsArg, selector, model) {
    if (!core.config.enabled || !model || optionsArg['cacheops'] === false) return originalRawSelect.call(this, tableName, optionsArg, selector, model);
    const options = Utils.cloneDeep(optionsArg) as ReadOptions & { plain?: boolean; raw?: boolean; dataType?: unknown };
    options.raw ??= true;
    options.plain ??= true;
    (options as Record<string, unknown>)['type'] ??= QueryTypes.SELECT;
    const op: CacheOp = selector === 'count' ? 'count' : 'aggregate';
    const shape: RawShape = { selector, plain: Boolean(options.plain), dataType: options.dataType };
    // The cached value is the query's raw result; selecting and parsing stay outside, as in Sequelize.
    const data = await cachedSelect(core, model, op, options, () => this.queryGenerator.selectQuery(tableName, options, model),
      `raw:${options.plain ? 'p' : ''}`, (sql) => this.sequelize.query(sql, options), captureOf(options as Record<PropertyKey, unknown>), shape);
    return rawResult(data, shape);
  };
}
