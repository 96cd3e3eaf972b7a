/**
 * Everything cacheops reads or replaces inside Sequelize beyond its typed
 * public API, named once. Each entry was checked against Sequelize 6.13.0
 * (the oldest release the peer range admits) and 6.37.8, the two releases of
 * the CI matrix (scripts/ci-matrix.sh): the fields are set where the comment
 * says, in both. A Sequelize that renames one fails here, in one file, and
 * in the tests of the matrix.
 *
 * The accessors are plain property reads (no copy, no check): they sit on
 * the hit and write paths.
 */
import * as sequelizeModule from 'sequelize';
import { Model, Op, type ModelStatic, type Sequelize, type Transaction } from 'sequelize';

// ---- Model classes (lib/model.js: init, refreshAttributes) -----------------------------------

/** The class fields of a model that the typings leave out. */
interface ModelClassInternals {
  /** The schema given to define/init or schema() (init; a clone of schema()). */
  readonly _schema?: string;
  /** Primary key attributes by name (refreshAttributes). */
  readonly primaryKeys: Readonly<Record<string, unknown>>;
  /** `unique: true|'name'` attributes grouped by index name (refreshAttributes). */
  readonly uniqueKeys?: Readonly<Record<string, { readonly fields: readonly string[] }>>;
  /** The model's `indexes` option, normalized (init, refreshAttributes). */
  readonly _indexes?: readonly { readonly unique?: boolean; readonly fields: readonly (string | { readonly name?: string; readonly attribute?: string })[] }[];
  /** Attribute definitions by column name (refreshAttributes). */
  readonly fieldRawAttributesMap: Readonly<Record<string, { readonly fieldName: string } | undefined>>;
  /** The auto-increment attribute's name, or null (_addDefaultAttributes). */
  readonly autoIncrementAttribute?: string | null;
  /** The default scope, or the one scope() applied (init, scope). */
  readonly _scope?: { readonly where?: unknown };
  /** What a raw build() runs each value through (refreshAttributes). */
  readonly _hasDateAttributes?: boolean;
  readonly _hasBooleanAttributes?: boolean;
  readonly _dataTypeSanitizers?: Readonly<Record<string, (this: unknown, value: unknown, options: { raw: true }) => unknown>>;
}

const modelClass = (model: ModelStatic<Model>): ModelClassInternals => model as unknown as ModelClassInternals;

/** The model's schema, if it has one. */
export const schemaOf = (model: ModelStatic<Model>): string | undefined => modelClass(model)._schema;

/** The model's primary key attributes, in definition order. */
export const primaryKeysOf = (model: ModelStatic<Model>): string[] => Object.keys(modelClass(model).primaryKeys);

/** The unique keys of the model: `unique` attributes and unique indexes, as attribute or column names. */
export function uniqueKeysOf(model: ModelStatic<Model>): { readonly fromAttributes: readonly (readonly string[])[]; readonly fromIndexes: readonly (readonly string[])[] } {
  const m = modelClass(model);
  return {
    fromAttributes: Object.values(m.uniqueKeys ?? {}).map((uk) => uk.fields),
    fromIndexes: (m._indexes ?? []).filter((ix) => ix.unique).map((ix) => ix.fields.map((f) => (typeof f === 'string' ? f : f.attribute ?? f.name ?? ''))),
  };
}

/** The attribute name of a column; undefined when no attribute maps to it. */
export const attributeOfField = (model: ModelStatic<Model>, field: string): string | undefined => modelClass(model).fieldRawAttributesMap[field]?.fieldName;

/** The model's auto-increment attribute. */
export const autoIncrementOf = (model: ModelStatic<Model>): string | null | undefined => modelClass(model).autoIncrementAttribute;

/** The schema delimiter given to define/init or schema() (init). */
export const schemaDelimiterOf = (model: ModelStatic<Model>): unknown => (model as unknown as { _schemaDelimiter?: unknown })._schemaDelimiter;

/** The model's current scope (a class scope() returned, or the default scope), whole. */
export const scopeOf = (model: ModelStatic<Model>): unknown => modelClass(model)._scope;

/** The model's current scope's where (a class scope() returned, or the default scope). */
export const scopeWhereOf = (model: ModelStatic<Model>): unknown => modelClass(model)._scope?.where;

/** The sanitizers a raw build() applies, when the model has date or boolean attributes. */
export function buildSanitizersOf(model: ModelStatic<Model>): ModelClassInternals['_dataTypeSanitizers'] {
  const m = modelClass(model);
  return m._hasDateAttributes || m._hasBooleanAttributes ? m._dataTypeSanitizers : undefined;
}

/** The Sequelize instance a value (say a model class) belongs to, if any. */
export const sequelizeOf = (value: object): unknown => (value as { sequelize?: unknown }).sequelize;

/** Model's static methods, to be replaced (findAll, findOne, findByPk, ...). */
export const modelStatics = (): Record<string, (...args: unknown[]) => unknown> => Model as unknown as Record<string, (...args: unknown[]) => unknown>;

// ---- Model instances (lib/model.js: constructor, _setInclude) ----------------------------------

/** The fields of an instance that the typings leave out. */
export interface InstanceInternals {
  dataValues: Record<string, unknown>;
  /** The values as last saved or loaded (constructor, save). */
  _previousDataValues: Record<string, unknown>;
  /** The build options; `includeNames` lists the loaded associations (_conformIncludes). */
  _options: (Record<string, unknown> & { includeNames?: string[] }) | undefined;
  [key: string]: unknown;
}

/** An instance seen with its internal fields. */
export const instanceInternals = (instance: Model): InstanceInternals => instance as unknown as InstanceInternals;

/** An object built field by field as an instance (see query/copy.ts). */
export const asInstance = (built: InstanceInternals): Model => built as unknown as Model;

/** The values of an instance as last saved or loaded. */
export const previousValuesOf = (instance: Model): Record<string, unknown> | undefined => instanceInternals(instance)._previousDataValues;

/** The associations loaded into an instance (its includes' `as`). */
export const includeNamesOf = (instance: Model): string[] | undefined => instanceInternals(instance)._options?.includeNames;

// ---- The Sequelize instance and class (lib/sequelize.js) ---------------------------------------

/** Sequelize.query, typed as it is replaced (core/transactions.ts, write/raw-sql.ts). */
export type QueryFn = (this: unknown, sql: unknown, options?: Record<string, unknown> & { transaction?: Transaction | null }) => Promise<unknown>;

/** The instance with its `query` method replaceable. */
export const queryHolder = (sequelize: Sequelize): { query: QueryFn } => sequelize as unknown as { query: QueryFn };

/** The CLS namespace of Sequelize.useCLS (a static `_cls`; Sequelize.prototype.query reads its 'transaction'). */
export function clsOf(sequelize: Sequelize): { get(key: string): unknown } | undefined {
  return (sequelize.constructor as { _cls?: { get(key: string): unknown } })._cls;
}

/** The options given to the constructor: SQLite's file (`storage`, or `host` when storage is absent). */
export function storageOptionsOf(sequelize: Sequelize): { readonly storage?: string; readonly host?: string } {
  return (sequelize as unknown as { options: { storage?: string; host?: string } }).options;
}

/** The connection settings (constructor: `this.config`). */
export function connectionConfigOf(sequelize: Sequelize): { readonly host?: string; readonly port?: number | string; readonly username?: string; readonly password?: string | null; readonly database?: string } {
  return sequelize.config as unknown as ReturnType<typeof connectionConfigOf>;
}

/** The connection manager (constructor: `this.connectionManager`); C is the driver's connection. */
export function connectionManagerOf<C>(sequelize: Sequelize): { getConnection(options: object): Promise<C> } {
  return (sequelize as unknown as { connectionManager: { getConnection(options: object): Promise<C> } }).connectionManager;
}

/** The prototype of the dialect's Query class (run; SQLite's applyParsers). */
export function dialectQueryPrototype(sequelize: Sequelize): Record<string | symbol, unknown> {
  return (sequelize as unknown as { dialect: { Query: { prototype: Record<string | symbol, unknown> } } }).dialect.Query.prototype;
}

/** SQLite's Query.prototype.applyParsers: a column value parsed by its declared type, as a SELECT parses it. */
export function sqliteParserOf(sequelize: Sequelize): (type: string, value: unknown) => unknown {
  const applyParsers = dialectQueryPrototype(sequelize)['applyParsers'] as (this: { sequelize: Sequelize }, type: string, value: unknown) => unknown;
  const context = { sequelize };
  return (type, value) => applyParsers.call(context, type, value);
}

// ---- QueryInterface (lib/dialects/abstract/query-interface.js) ---------------------------------

/** The query generator: quoteTable and selectQuery. */
export interface QueryGeneratorInternals {
  quoteTable(table: unknown): string;
  selectQuery(table: unknown, options: unknown, model: unknown): string;
}

/** The QueryInterface of a Sequelize, with the methods cacheops replaces (reads and writes). */
export interface QueryInterfaceInternals {
  readonly sequelize: { query(sql: string, options: unknown): Promise<unknown> };
  readonly queryGenerator: QueryGeneratorInternals;
  select(model: ModelStatic<Model>, tableName: unknown, options: Record<string, unknown>): Promise<unknown>;
  rawSelect(tableName: unknown, options: Record<string, unknown>, selector: string, model?: ModelStatic<Model>): Promise<unknown>;
}

export const queryInterfaceOf = (sequelize: Sequelize): QueryInterfaceInternals => sequelize.getQueryInterface() as unknown as QueryInterfaceInternals;

/**
 * The QueryInterface's methods by name (insert, update, bulkUpdate, delete,
 * bulkDelete, upsert, bulkInsert), typed loosely: their signatures are internal.
 */
export function queryInterfaceMethods<F>(sequelize: Sequelize): Record<string, F> {
  return sequelize.getQueryInterface() as unknown as Record<string, F>;
}

// ---- Transactions (lib/transaction.js: constructor, commit, rollback) ---------------------------

interface TransactionInternals {
  /** The transaction a savepoint was opened in (`options.transaction`). */
  readonly parent?: Transaction;
  /** The connection its statements run on (set by prepareEnvironment). */
  readonly connection?: unknown;
  /** 'commit' or 'rollback' once ended. */
  readonly finished?: string;
}

const transaction = (t: Transaction): TransactionInternals => t as unknown as TransactionInternals;

export const parentOf = (t: Transaction): Transaction | undefined => transaction(t).parent;
export const connectionOf = <C>(t: Transaction): C | undefined => transaction(t).connection as C | undefined;
export const isFinished = (t: Transaction): boolean => Boolean(transaction(t).finished);

/**
 * The flag PostgreSQL's Query.run sets on a driver connection whose query
 * failed fatally (`connection._invalid`); the connection manager's validate()
 * then keeps it out of the pool. Carried from a stand-in connection to the real one.
 */
export function carryInvalidFlag(from: object, to: object): void {
  if (Object.prototype.hasOwnProperty.call(from, '_invalid')) (to as { _invalid?: unknown })._invalid = (from as { _invalid?: unknown })._invalid;
}

// ---- The module ----------------------------------------------------------------------------

/** Op's symbols by name. */
export const opSymbols = (): Record<string, symbol> => Op as unknown as Record<string, symbol>;

/** An association class of the module (HasMany, BelongsToMany, HasOne, BelongsTo), to patch its prototype. */
export function associationPrototype<P>(name: 'HasMany' | 'BelongsToMany' | 'HasOne' | 'BelongsTo'): P | undefined {
  return (sequelizeModule as unknown as Record<string, { prototype: P } | undefined>)[name]?.prototype;
}
