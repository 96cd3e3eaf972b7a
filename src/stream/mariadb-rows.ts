/**
 * A binlog transaction -> the invalidation an in-app write of the same rows
 * sends: each row image (before and after for an UPDATE) by its columns,
 * model-wide where the images cannot be read (a column type not measured, not
 * FULL images, TRUNCATE and other statements) and past `maxRowsForGranularWrite`
 * rows of one table. It also keeps, per transaction, one changed row's primary
 * key: the commit-visibility wait locks it (mariadb-server.ts, untilCommitted).
 */
import type { Model, ModelStatic } from 'sequelize';
import type { InvalidationItem } from '../core/cacheops-core';
import { toAttributesName, type Row } from '../write/rows';
import type { ImageRow } from './mariadb-binlog';
import type { SchemaColumn } from './mariadb-values';

export interface CoveredTable {
  readonly schema: string;
  readonly table: string;
  readonly model: ModelStatic<Model>;
}

/** What the visibility wait locks: a row by its key, or the table (statements). */
export interface LockTarget {
  readonly schema: string;
  readonly table: string;
  readonly key: Readonly<Record<string, unknown>> | undefined;
}

const lockable = (v: unknown): boolean => typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string';

export class BinlogTransaction {
  private readonly byTable = new Map<string, { model: ModelStatic<Model>; rows: Row[] | 'all' }>();
  events = 0;
  target: LockTarget | undefined;
  /** Seconds since the epoch of its last event (the binlog's resolution). */
  timestamp = 0;
  /** When its commit event arrived (ms since the epoch). */
  receivedAt = 0;

  constructor(private readonly maxRows: number) {}

  get empty(): boolean {
    return this.byTable.size === 0;
  }

  /** Model-wide: a statement, or rows that cannot be read. */
  addAll(covered: CoveredTable): void {
    this.events += 1;
    this.byTable.set(covered.table, { model: covered.model, rows: 'all' });
    this.target ??= { schema: covered.schema, table: covered.table, key: undefined };
  }

  addImages(covered: CoveredTable, images: readonly ImageRow[], columns: readonly SchemaColumn[]): void {
    this.events += images.length;
    let entry = this.byTable.get(covered.table);
    if (!entry) this.byTable.set(covered.table, (entry = { model: covered.model, rows: [] }));
    const keyColumns = columns.filter((c) => c.primary).map((c) => c.name);
    if (keyColumns.length > 0 && (this.target === undefined || this.target.key === undefined)) {
      const last = images[images.length - 1];
      if (last && keyColumns.every((c) => lockable(last[c]))) {
        this.target = { schema: covered.schema, table: covered.table, key: Object.fromEntries(keyColumns.map((c) => [c, last[c]])) };
      }
    }
    if (entry.rows === 'all') return;
    if (entry.rows.length + images.length > this.maxRows) {
      entry.rows = 'all';
      return;
    }
    for (const image of images) {
      const row: Row = {};
      for (const [column, value] of Object.entries(image)) row[toAttributesName(covered.model, column)] = value;
      entry.rows.push(row);
    }
  }

  items(): InvalidationItem[] {
    return [...this.byTable].map(([table, { model, rows }]) => ({ model, table, rows }));
  }
}

/** Tables a statement names among the covered ones (TRUNCATE, ALTER, DROP, RENAME...). */
export function tablesOfStatement(sql: string, schema: string, covered: readonly CoveredTable[]): CoveredTable[] {
  const text = sql.toLowerCase();
  // DROP/ALTER DATABASE names no table: everything of that database.
  if (/^\s*(drop|alter|create)\s+(database|schema)\b/.test(text)) return covered.filter((c) => text.includes(c.schema.toLowerCase()));
  return covered.filter((c) => {
    const name = c.table.toLowerCase();
    let from = text.indexOf(name);
    while (from >= 0) {
      const before = text[from - 1] ?? ' ';
      const after = text[from + name.length] ?? ' ';
      if (!/[a-z0-9_$]/.test(before) && !/[a-z0-9_$]/.test(after)) return schema === '' || schema === c.schema || text.includes(c.schema.toLowerCase());
      from = text.indexOf(name, from + 1);
    }
    return false;
  });
}
