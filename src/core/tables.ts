/**
 * Tables of models: the name a model's rows are invalidated under (with its
 * schema), the table as the dialect quotes it in the SQL Sequelize writes,
 * the index of every table of the app's models, and the attributes a
 * model's WHEREs are read against. Used by the core, the read and write
 * paths, the features and the CLI alike, so it sits low.
 */
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import { queryInterfaceOf, schemaOf } from './sequelize-internals';
import type { TreeContext } from './tree';

/** The real table name of a model, schema-qualified where it has a schema. */
export function tableOf(model: ModelStatic<Model>): string {
  const schema = schemaOf(model);
  return schema ? `${schema}.${model.tableName}` : model.tableName;
}

/** The model's table as the dialect quotes it in the statements Sequelize writes. */
export function quotedTable(sequelize: Sequelize, model: ModelStatic<Model>): string {
  return queryInterfaceOf(sequelize).queryGenerator.quoteTable(model.getTableName());
}

export function treeContext(model: ModelStatic<Model>, dialect: string, maxInListLength: number): TreeContext {
  return { attributes: model.getAttributes() as TreeContext['attributes'], dialect, maxInListLength };
}

interface TableIndex {
  /** How many models there were when it was built: defining one more rebuilds it. */
  readonly size: number;
  readonly byTable: Map<string, ModelStatic<Model>>;
  readonly pattern: RegExp | undefined;
}

const tableIndexes = new WeakMap<Sequelize, TableIndex>();

/** Every table of the app's models, and a regexp finding their names in SQL. */
export function tableIndex(sequelize: Sequelize): TableIndex {
  const models = Object.values(sequelize.models) as ModelStatic<Model>[];
  const cached = tableIndexes.get(sequelize);
  if (cached && cached.size === models.length) return cached;
  const byTable = new Map<string, ModelStatic<Model>>();
  for (const m of models) byTable.set(tableOf(m), m);
  const names = [...new Set(models.map((m) => m.tableName))].sort((a, b) => b.length - a.length)
    .map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const index = { size: models.length, byTable, pattern: names.length ? new RegExp(`(?<![\\w$])(${names.join('|')})(?![\\w$])`, 'g') : undefined };
  tableIndexes.set(sequelize, index);
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
