/**
 * What a select depends on: for its own model, the DNF of its where; for
 * every included model (and belongsToMany through model), the DNF of the
 * include's where; and "any row" of every other known table its SQL names
 * (subqueries and literals may read them). A write to any of those tables
 * invalidates the value when one of its rows' states matches a conjunction.
 */
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import type { Dependency } from '../cache-store';
import { FALSE, TRUE, or, whereToDnf, type Dnf, type TreeContext } from '../tree';

export interface DependencyContext {
  readonly sequelize: Sequelize;
  readonly dialect: string;
  readonly maxInListLength: number;
  /** false when caching is forbidden for a model (profile null). */
  readonly mayCache: (model: ModelStatic<Model>) => boolean;
}

/** The real table name of a model, schema-qualified where it has a schema. */
export function tableOf(model: ModelStatic<Model>): string {
  const schema = (model as unknown as { _schema?: string })._schema;
  return schema ? `${schema}.${model.tableName}` : model.tableName;
}

export function treeContext(model: ModelStatic<Model>, dialect: string, maxInListLength: number): TreeContext {
  return { attributes: model.getAttributes() as TreeContext['attributes'], dialect, maxInListLength };
}

interface IncludeLike {
  readonly model?: ModelStatic<Model>;
  readonly where?: unknown;
  readonly separate?: boolean;
  readonly include?: readonly IncludeLike[];
  readonly through?: { readonly model?: ModelStatic<Model>; readonly where?: unknown };
}


interface TableIndex { size: number; byTable: Map<string, ModelStatic<Model>>; pattern: RegExp | undefined }

/** Every table of the app's models, and a regexp finding their names in SQL. */
export function tableIndex(sequelize: Sequelize): { byTable: Map<string, ModelStatic<Model>>; pattern: RegExp | undefined } {
  const models = Object.values(sequelize.models) as ModelStatic<Model>[];
  const cached = (sequelize as unknown as { __cacheopsTables?: TableIndex | undefined }).__cacheopsTables;
  if (cached && cached.size === models.length) return cached;
  const byTable = new Map<string, ModelStatic<Model>>();
  for (const m of models) byTable.set(tableOf(m), m);
  const names = [...new Set(models.map((m) => m.tableName))].sort((a, b) => b.length - a.length)
    .map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const index = { size: models.length, byTable, pattern: names.length ? new RegExp(`(?<![\\w$])(${names.join('|')})(?![\\w$])`, 'g') : undefined };
  (sequelize as unknown as { __cacheopsTables?: TableIndex | undefined }).__cacheopsTables = index;
  return index;
}

/** Models whose table names appear in a piece of SQL. */
export function modelsNamedIn(sequelize: Sequelize, sql: string): ModelStatic<Model>[] {
  const { byTable, pattern } = tableIndex(sequelize);
  if (!pattern) return [];
  const found = new Set<ModelStatic<Model>>();
  for (const m of sql.matchAll(pattern)) {
    for (const [table, model] of byTable) if (table === m[1] || model.tableName === m[1]) found.add(model);
  }
  return [...found];
}

/**
 * The dependencies of a select, or undefined when it must not be cached.
 * Call it before generating the SQL: the generator replaces `options.where`
 * with its SQL text. Then `withTablesOf(sql)` adds the tables the SQL names.
 */
export function selectDependencies(
  ctx: DependencyContext,
  model: ModelStatic<Model>,
  options: { where?: unknown; include?: readonly IncludeLike[] },
): { withTablesOf(sql: string): Dependency[] | undefined } | undefined {
  const deps = new Map<string, Dnf>();
  let forbidden = false;
  const add = (m: ModelStatic<Model>, where: unknown): void => {
    if (!ctx.mayCache(m)) forbidden = true;
    const table = tableOf(m);
    const dnf = whereToDnf(where, treeContext(m, ctx.dialect, ctx.maxInListLength));
    deps.set(table, or(deps.get(table) ?? FALSE, dnf));
  };
  add(model, options.where);
  const walk = (includes: readonly IncludeLike[] | undefined): void => {
    for (const inc of includes ?? []) {
      if (inc.separate || !inc.model) continue; // a separate include runs (and caches) its own query
      add(inc.model, inc.where);
      if (inc.through?.model) add(inc.through.model, inc.through.where);
      walk(inc.include);
    }
  };
  walk(options.include);
  if (forbidden) return undefined;
  return {
    withTablesOf(sql: string): Dependency[] | undefined {
      const all = new Map(deps);
      for (const m of modelsNamedIn(ctx.sequelize, sql)) {
        const table = tableOf(m);
        if (all.has(table)) continue;
        if (!ctx.mayCache(m)) return undefined;
        all.set(table, TRUE);
      }
      return [...all].map(([table, conjs]) => ({ table, conjs }));
    },
  };
}
