/**
 * The per-request panel: this request's cache hits, misses and SQL queries.
 *
 * Counting is scoped to the request with AsyncLocalStorage: cacheops 'read'
 * events and Sequelize's logging both happen inside the request's async
 * context. The numbers are put into the HTML as it is sent (a placeholder in
 * the layout is replaced in `res.end`), after any view cache: a replayed page
 * shows the counts of the request that replayed it, not of the one that
 * rendered it first.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { NextFunction, Request, Response } from 'express';
import type { Cacheops } from '../src/index';

export interface RequestStats {
  hits: number;
  misses: number;
  sql: number;
  /** What was read, e.g. 'fetch Post: hit', 'fragment index.njk:12: miss'. */
  readonly reads: string[];
}

export const PANEL_MARK = '<!--cacheops-panel-->';
const storage = new AsyncLocalStorage<RequestStats>();

/** Counts a SQL statement of the current request (give this to Sequelize's `logging`). */
export function countSql(): void {
  const stats = storage.getStore();
  if (stats) stats.sql += 1;
}

/** Counts cacheops reads of the current request. */
export function countReads(cacheops: Cacheops): void {
  cacheops.on('read', (e) => {
    const stats = storage.getStore();
    if (!stats) return;
    if (e.hit) stats.hits += 1;
    else stats.misses += 1;
    stats.reads.push(`${e.op} ${e.model?.name ?? e.fn ?? ''}: ${e.hit ? 'hit' : 'miss'}`);
  });
}

const escape = (s: string): string => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

function panelHtml(s: RequestStats): string {
  const items = s.reads.map((r) => `<li>${escape(r)}</li>`).join('');
  return `<aside id="cacheops-panel">This request: <b data-stat="hits">${s.hits}</b> cache hits · `
    + `<b data-stat="misses">${s.misses}</b> misses · <b data-stat="sql">${s.sql}</b> SQL queries`
    + (items ? `<details><summary>reads</summary><ul>${items}</ul></details>` : '') + '</aside>';
}

/** Express middleware: opens the request's counters and fills the panel placeholder when the page is sent. */
export function panel() {
  return (_req: Request, res: Response, next: NextFunction): void => {
    const stats: RequestStats = { hits: 0, misses: 0, sql: 0, reads: [] };
    const end = res.end;
    res.end = function endWithPanel(this: Response, ...args: unknown[]) {
      const [chunk] = args;
      const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : undefined;
      if (text !== undefined && text.includes(PANEL_MARK)) {
        const html = text.replace(PANEL_MARK, panelHtml(stats));
        if (!this.headersSent) this.setHeader('Content-Length', Buffer.byteLength(html));
        args[0] = html;
      }
      return (end as (...a: unknown[]) => Response).apply(this, args);
    } as Response['end'];
    storage.run(stats, next);
  };
}
