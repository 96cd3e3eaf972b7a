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
 * request's, apart from the request's own count.
 *
 * What an invalidation dropped: every read event names the value's Redis key;
 * the example remembers the keys it saw cached, and once a write's
 * invalidation is reported, the keys no longer in Redis are what it dropped.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Cacheops, InvalidatedEvent, ReadEvent } from '../src/index';

/** One row state an invalidation went by: the model and the conjunction of the values written. */
export interface InvalidatedRows {
  readonly model: string;
  readonly table: string;
  /** `id=1 & title="…" & …` per row state (old and new), or one 'every cached value of the model'. */
  readonly conjunctions: readonly string[];
}

/** One invalidation (one write's call to Redis): by which rows, and what it dropped. */
export interface InvalidationEntry {
  /** The request that wrote: `POST /posts/1/edit`. */
  readonly request: string;
  readonly at: string;
  readonly rows: InvalidatedRows[];
  /** What the example had seen cached and is gone now: `page /posts/1`, `Post list, read by /`, ...; undefined while being checked. */
  dropped?: readonly string[];
}

export interface RequestStats {
  hits: number;
  misses: number;
  sql: number;
  /** `GET /posts/1`. */
  readonly request: string;
  readonly path: string;
  /** What was read, e.g. 'Post list: hit', 'page /posts/1 (cached view): miss, rendered'. */
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

const OP_WORDS: Record<string, string> = { fetch: 'list', get: 'by key', count: 'count', aggregate: 'aggregate', exists: 'exists' };

/** What a read is, in the words the panel lists it with. */
function label(e: ReadEvent, stats: RequestStats): string {
  if (e.op === 'view') return `page ${stats.path} (cached view)`;
  if (e.op === 'fragment') return `fragment "${e.fn ?? ''}"`;
  if (e.op === 'function') return `function ${e.fn ?? ''}`;
  return `${e.model?.name ?? ''} ${OP_WORDS[e.op] ?? e.op}`;
}

/** What the example has seen cached, by Redis key: after an invalidation, the keys gone are what it dropped. */
class CachedIndex {
  private readonly known = new Map<string, string>();

  note(key: string, what: string): void {
    this.known.set(key, what);
  }

  /** The values no longer in Redis (forgotten here): one EXISTS per known key, sent together. */
  async dropped(redis: Cacheops['core']['redis']): Promise<string[]> {
    const keys = [...this.known.keys()];
    const present = await Promise.all(keys.map((k) => redis.exists(k)));
    const gone = keys.filter((_, i) => present[i] === 0);
    const described = [...new Set(gone.map((k) => this.known.get(k)!))];
    for (const k of gone) this.known.delete(k);
    return described;
  }
}

/** Counts cacheops reads and invalidations of the current request, and logs every invalidation with what it dropped. */
export function watch(cacheops: Cacheops, log: InvalidationLog): void {
  const index = new CachedIndex();
  cacheops.on('read', (e) => {
    const stats = storage.getStore();
    if (!stats) return;
    const what = label(e, stats);
    if (e.hit || e.stored) index.note(e.key, e.op === 'view' ? what.replace(' (cached view)', '') : `${what}, read by ${stats.path}`);
    if (e.op === 'view' && !e.hit && stats.viewRendered) return; // already listed by viewRendered()
    if (e.hit) stats.hits += 1;
    else stats.misses += 1;
    stats.reads.push(`${what}: ${e.hit ? 'hit' : 'miss'}`);
  });
  // One write's tables are invalidated by one call to Redis, then reported one event each, in one go:
  // they make one entry, and what is gone from Redis once they are all reported is what it dropped.
  let open: InvalidationEntry | undefined;
  cacheops.on('invalidated', (e) => {
    const rows: InvalidatedRows = { model: e.model?.name ?? e.table, table: e.table, conjunctions: conjunctionsOf(e.values) };
    if (open) {
      open.rows.push(rows);
      return;
    }
    const stats = storage.getStore();
    const entry: InvalidationEntry = { request: stats?.request ?? 'outside a request', at: new Date().toISOString(), rows: [rows] };
    open = entry;
    stats?.invalidations.push(entry);
    queueMicrotask(() => {
      open = undefined;
      index.dropped(cacheops.core.redis)
        .then((dropped) => { entry.dropped = dropped; }, () => { entry.dropped = []; })
        .finally(() => log.add(entry));
    });
  });
}

export const escapeHtml = (s: string): string => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** `1 cache hit`, `2 cache hits`. */
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** One invalidation: the row states it went by, and what it dropped (used by the panel and the live page). */
export function invalidationHtml(entry: InvalidationEntry): string {
  const rows = entry.rows.flatMap((r) => r.conjunctions.map((c) => `<li data-model="${escapeHtml(r.model)}"><b>${escapeHtml(r.model)}</b> `
    + `<code>${escapeHtml(c)}</code></li>`)).join('');
  const dropped = entry.dropped === undefined ? '<li class="meta">checking…</li>'
    : entry.dropped.length === 0 ? '<li class="meta">nothing this example had cached</li>'
      : entry.dropped.map((d) => `<li data-dropped>${escapeHtml(d)}</li>`).join('');
  return `<div class="invalidation"><p class="by">By the row states written:</p><ul class="rows">${rows}</ul>`
    + `<p class="by">Dropped from the cache:</p><ul class="dropped">${dropped}</ul></div>`;
}

/** `1 invalidation, 4 cached values dropped`. */
function invalidationsSummary(entries: readonly InvalidationEntry[]): string {
  const dropped = entries.reduce((n, e) => n + (e.dropped?.length ?? 0), 0);
  return `${plural(entries.length, 'invalidation')}, ${plural(dropped, 'cached value')} dropped`;
}

function panelHtml(s: RequestStats): string {
  const reads = s.reads.map((r) => `<li>${escapeHtml(r)}</li>`).join('');
  const section = (id: string, title: string, entries: readonly InvalidationEntry[]): string =>
    `<details id="${id}" open><summary>${escapeHtml(title)}: ${invalidationsSummary(entries)}</summary>${entries.map(invalidationHtml).join('')}</details>`;
  const stat = (name: string, n: number, one: string, many?: string): string => {
    const words = plural(n, one, many).slice(String(n).length);
    return `<span class="stat"><b data-stat="${name}">${n}</b>${words}</span>`;
  };
  return `<aside id="cacheops-panel"><p class="summary"><span class="what">This request, <code>${escapeHtml(s.request)}</code>:</span> `
    + `${stat('hits', s.hits, 'cache hit')} ${stat('misses', s.misses, 'miss', 'misses')} ${stat('sql', s.sql, 'SQL query', 'SQL queries')} `
    + `${stat('invalidations', s.invalidations.length, 'invalidation')} <a href="/invalidations">live invalidations</a></p>`
    + (reads ? `<details id="cacheops-reads" open><summary>${plural(s.reads.length, 'read')} through the cache</summary><ul>${reads}</ul></details>` : '')
    + (s.invalidations.length ? section('cacheops-invalidations', 'Invalidated by this request', s.invalidations) : '')
    + (s.previous ? section('cacheops-previous', `Invalidated by the previous request, ${s.previous.request}`, s.previous.invalidations) : '')
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
