/**
 * The per-request panel: this request's cache hits, misses, invalidations and
 * SQL queries, and the live log of invalidations (`/invalidations`).
 *
 * Counting is scoped to the request with AsyncLocalStorage: cacheops 'read'
 * and 'invalidated' events and Sequelize's logging all happen inside the
 * request's async context. The numbers are put into the HTML as it is sent (a
 * placeholder in the layout is replaced in `res.end`), after any view cache: a
 * replayed page shows the counts of the request that replayed it, not of the
 * one that rendered it first.
 *
 * Two things need care. A cached view's miss is counted by cacheops once the
 * page is stored, after it was sent: the view's handler calls `viewRendered()`
 * so the panel lists it. And a write usually answers with a redirect, which
 * shows no panel: its invalidations are handed to the next page the same
 * browser loads (a short-lived cookie), which lists them as the previous
 * request's.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Cacheops, InvalidatedEvent } from '../src/index';

/** One invalidation: the model and the row state (a conjunction of its values) or 'every cached value'. */
export interface InvalidationEntry {
  readonly model: string;
  readonly table: string;
  /** `id=1 & title="…" & …` per row state (old and new), or one 'all'. */
  readonly conjunctions: readonly string[];
  /** The request that wrote: `POST /posts/1/edit`. */
  readonly request: string;
  readonly at: string;
}

export interface RequestStats {
  hits: number;
  misses: number;
  sql: number;
  /** `GET /posts/1`. */
  readonly request: string;
  readonly path: string;
  /** What was read, e.g. 'fetch Post: hit', 'page /posts/1 (cached view): miss, rendered'. */
  readonly reads: string[];
  readonly invalidations: InvalidationEntry[];
  /** The invalidations of the previous request (a write that redirected here). */
  previous?: { readonly request: string; readonly invalidations: readonly InvalidationEntry[] };
  viewRendered: boolean;
}

export const PANEL_MARK = '<!--cacheops-panel-->';
const storage = new AsyncLocalStorage<RequestStats>();

/** Counts a SQL statement of the current request (give this to Sequelize's `logging`). */
export function countSql(): void {
  const stats = storage.getStore();
  if (stats) stats.sql += 1;
}

/** The handler of a cached view calls this: it runs only on a miss, so the page is being rendered. */
export function viewRendered(): void {
  const stats = storage.getStore();
  if (!stats || stats.viewRendered) return;
  stats.viewRendered = true;
  stats.misses += 1;
  stats.reads.push(`page ${stats.path} (cached view): miss, rendered`);
}

const MAX_LOG = 50;

/** The live log: the latest invalidations of every request, and who listens to it. */
export class InvalidationLog {
  readonly entries: InvalidationEntry[] = [];
  private readonly listeners = new Set<(entry: InvalidationEntry) => void>();

  add(entry: InvalidationEntry): void {
    this.entries.unshift(entry);
    this.entries.length = Math.min(this.entries.length, MAX_LOG);
    for (const listener of this.listeners) listener(entry);
  }

  /** Calls `listener` for each new entry until the returned function is called. */
  subscribe(listener: (entry: InvalidationEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

function show(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 39)}…` : value);
  return String(value);
}

/** A row state as the conjunction of its values: any cached query whose conditions it meets was dropped. */
function conjunctionsOf(values: InvalidatedEvent['values']): string[] {
  if (values === 'all') return ['every cached value of the model'];
  return values.map((row) => Object.entries(row).filter(([k]) => k !== 'createdAt' && k !== 'updatedAt')
    .map(([k, v]) => `${k}=${show(v)}`).join(' & '));
}

const label = (e: { op: string; model?: { name: string } | undefined; fn?: string | undefined }, stats: RequestStats): string => {
  if (e.op === 'view') return `page ${stats.path} (cached view)`;
  if (e.op === 'fragment') return `fragment ${e.fn ?? ''}`;
  if (e.op === 'function') return `function ${e.fn ?? ''}`;
  return `${e.op} ${e.model?.name ?? ''}`;
};

/** Counts cacheops reads and invalidations of the current request, and logs every invalidation. */
export function watch(cacheops: Cacheops, log: InvalidationLog): void {
  cacheops.on('read', (e) => {
    const stats = storage.getStore();
    if (!stats) return;
    if (e.op === 'view' && !e.hit && stats.viewRendered) return; // already listed by viewRendered()
    if (e.hit) stats.hits += 1;
    else stats.misses += 1;
    stats.reads.push(`${label(e, stats)}: ${e.hit ? 'hit' : 'miss'}`);
  });
  cacheops.on('invalidated', (e) => {
    const stats = storage.getStore();
    const entry: InvalidationEntry = {
      model: e.model?.name ?? e.table, table: e.table, conjunctions: conjunctionsOf(e.values),
      request: stats?.request ?? 'outside a request', at: new Date().toISOString(),
    };
    stats?.invalidations.push(entry);
    log.add(entry);
  });
}

export const escapeHtml = (s: string): string => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** One invalidation as list items (used by the panel and the live page). */
export function invalidationHtml(entry: InvalidationEntry): string {
  return entry.conjunctions.map((c) => `<li data-model="${escapeHtml(entry.model)}"><b>${escapeHtml(entry.model)}</b> `
    + `<code>${escapeHtml(c)}</code></li>`).join('');
}

function panelHtml(s: RequestStats): string {
  const reads = s.reads.map((r) => `<li>${escapeHtml(r)}</li>`).join('');
  const own = s.invalidations.map(invalidationHtml).join('');
  const previous = s.previous ? s.previous.invalidations.map(invalidationHtml).join('') : '';
  return `<aside id="cacheops-panel">This request: <b data-stat="hits">${s.hits}</b> cache hits · `
    + `<b data-stat="misses">${s.misses}</b> misses · <b data-stat="invalidations">${s.invalidations.length}</b> invalidations · `
    + `<b data-stat="sql">${s.sql}</b> SQL queries · <a href="/invalidations">live invalidations</a>`
    + (reads ? `<details id="cacheops-reads"><summary>reads</summary><ul>${reads}</ul></details>` : '')
    + (own ? `<details id="cacheops-invalidations" open><summary>invalidated by this request</summary><ul>${own}</ul></details>` : '')
    + (previous ? `<details id="cacheops-previous" open><summary>invalidated by the previous request, ${escapeHtml(s.previous!.request)}</summary><ul>${previous}</ul></details>` : '')
    + '</aside>';
}

const FLASH_COOKIE = 'cacheops-panel-flash';
const FLASH_TTL_MS = 60_000;

function cookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

/** Express middleware: opens the request's counters and fills the panel placeholder when the page is sent. */
export function panel() {
  // The invalidations of writes that redirected, until the next page of that browser shows them.
  const flashes = new Map<string, { request: string; invalidations: InvalidationEntry[]; expires: number }>();
  return (req: Request, res: Response, next: NextFunction): void => {
    const path = req.originalUrl;
    const stats: RequestStats = { hits: 0, misses: 0, sql: 0, request: `${req.method} ${path}`, path, reads: [], invalidations: [], viewRendered: false };
    const flashId = cookie(req, FLASH_COOKIE);
    const end = res.end;
    res.end = function endWithPanel(this: Response, ...args: unknown[]) {
      const [chunk] = args;
      const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : undefined;
      if (text !== undefined && text.includes(PANEL_MARK)) {
        const flash = flashId === undefined ? undefined : flashes.get(flashId);
        if (flash && flash.expires > Date.now()) stats.previous = flash;
        // Shown once. The cookie is left to expire: a Set-Cookie would keep a cached view from being stored.
        if (flashId !== undefined) flashes.delete(flashId);
        const html = text.replace(PANEL_MARK, panelHtml(stats));
        if (!this.headersSent) this.setHeader('Content-Length', Buffer.byteLength(html));
        args[0] = html;
      } else if (stats.invalidations.length > 0 && this.statusCode >= 300 && this.statusCode < 400 && !this.headersSent) {
        const id = randomBytes(8).toString('hex');
        for (const [k, f] of flashes) if (f.expires <= Date.now()) flashes.delete(k);
        flashes.set(id, { request: stats.request, invalidations: stats.invalidations, expires: Date.now() + FLASH_TTL_MS });
        this.append('Set-Cookie', `${FLASH_COOKIE}=${id}; Max-Age=60; Path=/; HttpOnly; SameSite=Lax`);
      }
      return (end as (...a: unknown[]) => Response).apply(this, args);
    } as Response['end'];
    storage.run(stats, next);
  };
}
