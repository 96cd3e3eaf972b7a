/**
 * Raw SQL writes (`sequelize.query` with an INSERT, UPDATE, DELETE, DDL...):
 * their rows cannot be known, so every model whose table the SQL names is
 * invalidated whole.
 */
import { QueryTypes } from 'sequelize';
import { modelsNamedIn, tableOf } from '../core/tables';
import type { Options, WriteProtocol } from './protocol';
import { insideManagedWrite } from './strategies/strategy';
import { invalidateWrite } from './invalidation';
import { queryHolder } from '../core/sequelize-internals';

const WRITE_SQL = /^\s*(?:\/\*[\s\S]*?\*\/\s*|--[^\n]*\n\s*)*(?:with\b[\s\S]*?\)\s*)?(insert|update|delete|truncate|replace|merge|upsert|alter|drop|create|rename)\b/i;
const DDL_SQL = /^\s*(?:\/\*[\s\S]*?\*\/\s*|--[^\n]*\n\s*)*(truncate|alter|drop|create|rename)\b/i;
const WRITE_TYPES = new Set<string>([QueryTypes.INSERT, QueryTypes.UPDATE, QueryTypes.BULKUPDATE, QueryTypes.BULKDELETE, QueryTypes.DELETE, QueryTypes.UPSERT]);

/** Wraps `sequelize.query`; the QueryInterface methods' own SQL (insideManagedWrite) is left to them. */
export function captureRawWrites(self: WriteProtocol): void {
  const sequelize = queryHolder(self.core.sequelize);
  const originalQuery = sequelize.query;
  const wrapped = async function query(this: unknown, sql: unknown, options: Options | undefined, text: string): Promise<unknown> {
    if (insideManagedWrite.getStore() || !self.core.config.enabled) return originalQuery.call(this, sql, options);
    const type = options?.['type'] as string | undefined;
    const isWrite = (type !== undefined && WRITE_TYPES.has(type)) || ((type === undefined || type === QueryTypes.RAW) && WRITE_SQL.test(text));
    if (!isWrite) return originalQuery.call(this, sql, options);
    const optedOut = self.optedOut(options);
    const tx = self.core.transactions.current(options);
    const ended = tx ? self.core.transactions.beginWrite(tx) : undefined;
    try {
      if (optedOut) return await originalQuery.call(this, sql, options);
      const result = await originalQuery.call(this, sql, options);
      const models = modelsNamedIn(self.core.sequelize, text);
      const items = models.map((m) => ({ model: m, table: tableOf(m), rows: 'all' as const }));
      // DDL (TRUNCATE, ALTER, ...) commits at once on MySQL/MariaDB, whatever the transaction does next.
      if (tx && self.isMysql && DDL_SQL.test(text)) await invalidateWrite(self.core, items, undefined);
      await invalidateWrite(self.core, items, tx);
      return result;
    } finally {
      ended?.();
    }
  };
  sequelize.query = async function query(this: unknown, sql: unknown, options?: Options) {
    const text = typeof sql === 'string' ? sql : (sql as { query?: string } | undefined)?.query ?? '';
    if (!DDL_SQL.test(text)) return wrapped.call(this, sql, options, text);
    try {
      return await wrapped.call(this, sql, options, text);
    } finally {
      // A dropped or altered table: SQLite's row images forget its triggers and column types.
      self.sqlite.schemaChanged();
    }
  };
}
