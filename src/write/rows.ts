/**
 * Rows of a write: keys, attribute names, and the WHEREs that find the rows
 * a write touches (see protocol.ts).
 */
import { Op, Utils, type Model, type ModelStatic } from 'sequelize';
import { tokenKind } from '../core/tokens';
import { attributeOfField, buildSanitizersOf, primaryKeysOf, uniqueKeysOf } from '../core/sequelize-internals';

export type Row = Record<string, unknown>;

export function primaryKeys(model: ModelStatic<Model>): string[] {
  return primaryKeysOf(model);
}

/** Field-keyed values -> attribute-keyed. */
export function toAttributes(model: ModelStatic<Model>, values: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(values)) out[toAttributesName(model, k)] = v;
  return out;
}

/**
 * Row states known only from the application's values (inserts whose rows
 * cannot be read back): values the database may store differently (dates
 * rounded to the column's precision, decimals to its scale, SQL expressions)
 * are dropped, which makes them match every conjunction of that field.
 */
export function appRow(model: ModelStatic<Model>, dialect: string, values: Row): Row {
  const attrs = model.getAttributes() as Record<string, { type: unknown }>;
  const out: Row = {};
  for (const [k, v] of Object.entries(toAttributes(model, values))) {
    const attr = attrs[k];
    if (!attr || v instanceof Utils.SequelizeMethod) continue;
    const kind = tokenKind(attr, dialect);
    if (kind === 'date') continue;
    if (kind === 'number' && (typeof v !== 'number' || !Number.isInteger(v)) && typeof v !== 'bigint') continue;
    out[k] = v;
  }
  return out;
}

/** A WHERE selecting rows by primary key, or undefined when the model has none. */
export function byPrimaryKeys(model: ModelStatic<Model>, rows: Row[]): unknown {
  const pks = primaryKeys(model);
  if (pks.length === 0) return undefined;
  const usable = rows.filter((r) => pks.every((k) => r[k] !== undefined && r[k] !== null));
  if (usable.length !== rows.length) return undefined;
  if (usable.length === 0) return null;
  if (pks.length === 1) return { [pks[0]!]: { [Op.in]: usable.map((r) => r[pks[0]!]) } };
  return { [Op.or]: usable.map((r) => Object.fromEntries(pks.map((k) => [k, r[k]]))) };
}

/**
 * A mass write's WHERE limited to the rows its pre-read locked. Under READ
 * COMMITTED (PostgreSQL's default) the UPDATE/DELETE takes a new snapshot, so
 * it would also change rows committed into its WHERE after the pre-read; their
 * old states were never read, so a value cached from them would outlive the
 * write. Limited to the locked rows, the write does what it would have done at
 * the moment of the pre-read. Undefined (no limit) for a model without a key.
 */
export function lockedOnly(model: ModelStatic<Model>, where: unknown, rows: Row[]): unknown {
  const pks = primaryKeys(model);
  const first = pks[0];
  if (first === undefined) return undefined;
  const attrs = model.getAttributes() as Record<string, { field?: string }>;
  const field = (attribute: string): string => attrs[attribute]?.field ?? attribute;
  // No row: `IN ()` becomes `IN (NULL)`, which matches nothing.
  const keys = pks.length === 1 || rows.length === 0
    ? { [field(first)]: { [Op.in]: rows.map((r) => r[first]) } }
    : { [Op.or]: rows.map((r) => Object.fromEntries(pks.map((k) => [field(k), r[k]]))) };
  return { [Op.and]: [where, keys] };
}

/** A WHERE selecting the rows that could conflict with these values on a primary or unique key. */
export function byUniqueKeys(model: ModelStatic<Model>, records: Row[]): { where: unknown; complete: boolean } {
  const unique = uniqueKeysOf(model);
  const keySets: string[][] = [primaryKeys(model)];
  for (const fields of unique.fromAttributes) if (fields.length) keySets.push(fields.map((f) => toAttributesName(model, f)));
  for (const fields of unique.fromIndexes) keySets.push(fields.map((f) => toAttributesName(model, f)));
  const clauses: Row[] = [];
  let complete = true;
  for (const raw of records) {
    const rec = toAttributes(model, raw);
    let found = false;
    for (const keys of keySets) {
      if (keys.length && keys.every((k) => rec[k] !== undefined && rec[k] !== null && !(rec[k] instanceof Utils.SequelizeMethod))) {
        clauses.push(Object.fromEntries(keys.map((k) => [k, rec[k]])));
        found = true;
      }
    }
    if (!found) complete = false;
  }
  return { where: clauses.length ? { [Op.or]: clauses } : null, complete };
}

/** The attribute name of a column (field) name; the name itself when no attribute maps to it. */
export function toAttributesName(model: ModelStatic<Model>, field: string): string {
  return attributeOfField(model, field) ?? field;
}

/**
 * The dataValues `model.build(values, { raw: true, isNewRecord: false })`
 * would hold (those findAll gives a row), without making an instance, which
 * cost more than the rest of a row's image: a raw set keeps the values as
 * they are, except that on a model with date or boolean attributes each one
 * goes through its type's sanitizer (a BOOLEAN's 0/1 becomes false/true).
 */
export function asBuilt(model: ModelStatic<Model>, values: Row): Row {
  const sanitizers = buildSanitizersOf(model);
  if (!sanitizers) return values;
  const out: Row = {};
  for (const key in values) {
    const sanitize = Object.prototype.hasOwnProperty.call(sanitizers, key) ? sanitizers[key] : undefined;
    out[key] = sanitize ? sanitize.call(undefined, values[key], { raw: true }) : values[key];
  }
  return out;
}
