/**
 * Foreign-key actions: what the database itself writes in referencing tables
 * when rows are deleted or their keys change (see referencing()).
 */
import type { Model, ModelStatic } from 'sequelize';
import { tableOf } from '../core/tables';
import { primaryKeys, toAttributesName, type Row } from './rows';

export interface Reference {
  readonly child: ModelStatic<Model>;
  /** The child's foreign key attribute. */
  readonly fk: string;
  /** The parent's referenced attribute. */
  readonly key: string;
  /** ON DELETE / ON UPDATE CASCADE: the child's own children are touched too. */
  readonly cascades: boolean;
}

/** Foreign keys of every model that point at this model's table. */
export function referencesTo(model: ModelStatic<Model>): Reference[] {
  const out: Reference[] = [];
  const pk = primaryKeys(model)[0];
  for (const child of Object.values(model.sequelize!.models) as ModelStatic<Model>[]) {
    for (const [fk, attr] of Object.entries(child.getAttributes() as Record<string, { references?: { model?: unknown; key?: string }; onDelete?: string; onUpdate?: string }>)) {
      const target = attr.references?.model;
      const targetTable = typeof target === 'string' ? target
        : typeof target === 'function' ? (target as ModelStatic<Model>).tableName
          : (target as { tableName?: string } | undefined)?.tableName;
      if (targetTable !== model.tableName) continue;
      const keyField = attr.references?.key;
      const key = keyField ? toAttributesName(model, keyField) : pk;
      if (!key) continue;
      const cascades = [attr.onDelete, attr.onUpdate].some((a) => typeof a === 'string' && a.toUpperCase() === 'CASCADE');
      out.push({ child, fk, key, cascades });
    }
  }
  return out;
}

export type Invalidation = { model: ModelStatic<Model>; table: string; rows: Row[] | 'all' };

/**
 * What the database itself may write when rows of `model` are deleted or
 * their keys change: ON DELETE/UPDATE CASCADE, SET NULL and SET DEFAULT on
 * the tables referencing it. Children are invalidated by the foreign key
 * values that went away or appeared (and NULL); a cascade one level further
 * down invalidates those grandchildren's models whole.
 */
export function referencing(model: ModelStatic<Model>, change: 'all' | { before: Row[]; after: Row[] }, seen = new Set<ModelStatic<Model>>()): Invalidation[] {
  seen.add(model);
  const out: Invalidation[] = [];
  for (const ref of referencesTo(model)) {
    let rows: Row[] | 'all' = 'all';
    if (change !== 'all') {
      const keysOf = (rs: Row[]) => new Set(rs.map((r) => r[ref.key]).filter((v) => v !== undefined && v !== null).map((v) => String(v)));
      const beforeKeys = keysOf(change.before);
      const afterKeys = keysOf(change.after);
      const gone = change.before.map((r) => r[ref.key]).filter((v) => v !== undefined && v !== null && !afterKeys.has(String(v)));
      // Keys that appear are a key update only where rows existed before: an insert cascades nothing.
      const added = change.before.length === 0 ? [] : change.after.map((r) => r[ref.key]).filter((v) => v !== undefined && v !== null && !beforeKeys.has(String(v)));
      if (gone.length === 0 && added.length === 0) continue;
      rows = [...gone, ...added, null].map((v) => ({ [ref.fk]: v }));
    }
    out.push({ model: ref.child, table: tableOf(ref.child), rows });
    if (ref.cascades && !seen.has(ref.child)) out.push(...referencing(ref.child, 'all', seen));
  }
  return out;
}
