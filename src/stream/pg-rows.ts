/**
 * A decoded PostgreSQL transaction -> the invalidation an in-app write of the
 * same rows sends: old and new states where the stream carries them, the whole
 * model where it does not (TRUNCATE, an UPDATE without the old row: REPLICA
 * IDENTITY DEFAULT), and past `maxRowsForGranularWrite` rows of one table.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { InvalidationItem } from '../core/cacheops-core';
import { toAttributesName, type Row } from '../write/rows';
import type { PgMessage, RelationColumn, TupleValue } from './pgoutput';

export interface Relation {
  readonly table: string;
  readonly model: ModelStatic<Model> | undefined;
  readonly columns: readonly RelationColumn[];
}

const BYTEA = 17;
const TIMESTAMP = 1114;
const TIMESTAMPTZ = 1184;

/** `2024-05-01 10:00:00.123+02` (PostgreSQL's text form of timestamptz, ISO DateStyle) as a Date. */
function timestamptz(text: string): Date | undefined {
  const m = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(\.\d+)?([+-]\d\d)(?::?(\d\d))?(?::?(\d\d))?$/.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac = '', oh = '+00', om = '00', os = '00'] = m;
  const sign = oh.startsWith('-') ? -1 : 1;
  const offsetMs = sign * ((Math.abs(Number(oh)) * 60 + Number(om)) * 60 + Number(os)) * 1000;
  const ms = frac ? Math.floor(Number(`0${frac}`) * 1000) : 0;
  const utc = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms) - offsetMs;
  return new Date(utc);
}

/**
 * A column's text as the value a read gives the tokenizer; undefined when it is
 * not known exactly (the row then matches every conjunction of that field).
 */
function valueOf(text: string, typeOid: number): unknown {
  if (typeOid === BYTEA) return text.startsWith('\\x') ? Buffer.from(text.slice(2), 'hex') : undefined;
  if (typeOid === TIMESTAMPTZ) return timestamptz(text);
  // Without a time zone the instant depends on the reader's zone: not guessed.
  if (typeOid === TIMESTAMP) return undefined;
  return text; // numbers, booleans ('t'/'f'), text, dates ('YYYY-MM-DD') tokenize from their text
}

/**
 * A tuple as an attribute-keyed row; unchanged TOASTed values are taken from
 * `fallback` when given. A key-only tuple (`keyOnly`: the old row under REPLICA
 * IDENTITY DEFAULT) sends NULL for every other column: those are unknown, not NULL.
 */
function rowOf(relation: Relation, tuple: readonly TupleValue[], fallback?: readonly TupleValue[], keyOnly = false): Row {
  const row: Row = {};
  relation.columns.forEach((column, i) => {
    if (keyOnly && !column.key) return;
    let value = tuple[i];
    if (value !== null && typeof value === 'object') value = fallback?.[i];
    if (value === undefined || (value !== null && typeof value === 'object')) return;
    const parsed = value === null ? null : valueOf(value, column.typeOid);
    if (parsed === undefined) return;
    row[relation.model ? toAttributesName(relation.model, column.name) : column.name] = parsed;
  });
  return row;
}

/** Invalidations of one transaction's changes, collected per table. */
export class TransactionChanges {
  private readonly byTable = new Map<string, { model: ModelStatic<Model> | undefined; rows: Row[] | 'all' }>();
  events = 0;

  constructor(private readonly maxRows: number) {}

  private add(relation: Relation, rows: Row[] | 'all'): void {
    this.events += 1;
    let entry = this.byTable.get(relation.table);
    if (!entry) this.byTable.set(relation.table, (entry = { model: relation.model, rows: [] }));
    if (entry.rows === 'all') return;
    if (rows === 'all' || entry.rows.length + rows.length > this.maxRows) entry.rows = 'all';
    else entry.rows.push(...rows);
  }

  /**
   * Whether a change to this relation needs no decoding: its table is not
   * covered (no model), or already invalidated whole in this batch (the change
   * is counted). A big transaction then costs a byte read per row past
   * `maxRowsForGranularWrite`, not a tuple decoded.
   */
  settled(relation: Relation | undefined): boolean {
    if (!relation?.model) return true;
    if (this.byTable.get(relation.table)?.rows !== 'all') return false;
    this.events += 1;
    return true;
  }

  /** Takes the changes of a later transaction in (consecutive transactions invalidated together). */
  absorb(other: TransactionChanges): void {
    for (const [table, { model, rows }] of other.byTable) {
      let entry = this.byTable.get(table);
      if (!entry) this.byTable.set(table, (entry = { model, rows: [] }));
      if (entry.rows === 'all') continue;
      if (rows === 'all' || entry.rows.length + rows.length > this.maxRows) entry.rows = 'all';
      else entry.rows.push(...rows);
    }
    this.events += other.events;
  }

  /** Adds a change message; relations not covered (no model) are skipped. */
  addMessage(message: PgMessage, relations: ReadonlyMap<number, Relation>): void {
    switch (message.tag) {
      case 'insert': {
        const rel = relations.get(message.relid);
        if (rel?.model) this.add(rel, [rowOf(rel, message.newRow)]);
        return;
      }
      case 'update': {
        const rel = relations.get(message.relid);
        if (!rel?.model) return;
        // Only REPLICA IDENTITY FULL sends the whole old row; without it the old state is unknown.
        if (!message.oldRow || message.oldIsKey) this.add(rel, 'all');
        else this.add(rel, [rowOf(rel, message.oldRow), rowOf(rel, message.newRow, message.oldRow)]);
        return;
      }
      case 'delete': {
        const rel = relations.get(message.relid);
        // A key-only old row (REPLICA IDENTITY DEFAULT) lacks the other fields: it matches every conjunction of them.
        if (rel?.model) this.add(rel, [rowOf(rel, message.oldRow, undefined, message.oldIsKey)]);
        return;
      }
      case 'truncate':
        for (const relid of message.relids) {
          const rel = relations.get(relid);
          if (rel?.model) this.add(rel, 'all');
        }
        return;
      default:
    }
  }

  items(): InvalidationItem[] {
    return [...this.byTable].map(([table, { model, rows }]) => ({ model, table, rows }));
  }
}
