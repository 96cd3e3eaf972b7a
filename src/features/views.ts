/**
 * View caching for Express/Connect (and plain Node http) handlers: the
 * status, headers and body of a successful GET response are cached by path
 * (+ `extra(req)`) and replayed without calling the handler.
 *
 * The response is captured while it is sent: `res.writeHead`, `res.write` and
 * `res.end` are wrapped for the duration of one miss (Express's `send`/`json`
 * go through them), so the client never waits for the cache store. What is
 * not cached: other methods, non-2xx statuses, responses with `Set-Cookie`
 * (they belong to one user) or `Cache-Control: no-store`/`private`, a handler
 * that calls `next()` and a response the client aborted. A HEAD request is
 * served from the GET entry, but a HEAD miss stores nothing (it has no body).
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { CacheopsCore } from '../core/cacheops-core';
import { checkTimeout, profileFor } from '../core/config';
import { CacheopsConfigError, CacheopsError } from '../core/errors';
import { declarationSite, functionIdentity } from './function-identity';
import { stableStringify } from '../query/key';
import { isSample, sampleDependencies, type Sample } from './function-samples';
import { decodeRaw, encodeRaw } from '../core/serialize';
import { NotStored, type ValueCodec } from '../core/read-plan';

/** Options of `cachedView` / `cachedViewAs`. */
export interface ViewCacheOptions {
  /** Seconds (default: the smallest timeout of the samples' profiles, else 3600). */
  readonly timeout?: number;
  /** Part of the key besides the path, e.g. `(req) => req.user?.isStaff`. */
  extra?(req: IncomingMessage): unknown;
  /** Dog-pile lock: concurrent misses of one page wait for the one that renders it. */
  readonly lock?: boolean;
  /** An explicit identity instead of the declaration site (to share entries between handlers). */
  readonly key?: string;
}

/** The `next` of Express/Connect (Express's NextFunction fits). */
export type NextLike = ((...args: never[]) => unknown) | undefined;

/**
 * An Express/Connect or plain Node http handler. Annotate its parameters
 * (`(req: Request, res: Response) => ...`) to get Express's types through.
 */
export type Handler<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse, Next extends NextLike = (err?: unknown) => void> =
  (req: Req, res: Res, next: Next) => unknown;

/** A cached handler; `invalidate(path, ...extra)` drops the entry of one path (and extra value). */
export type CachedHandler<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse, Next extends NextLike = (err?: unknown) => void> =
  ((req: Req, res: Res, next?: Next) => Promise<void>) & {
    invalidate(path: string, ...extra: unknown[]): Promise<boolean>;
  };

/** What `cachedView(...)` / `cachedViewAs(...)` return: a decorator of handlers. */
export type ViewDecorator = <Req extends IncomingMessage, Res extends ServerResponse, Next extends NextLike = (err?: unknown) => void>(handler: Handler<Req, Res, Next>) => CachedHandler<Req, Res, Next>;

type AnyNext = (...args: unknown[]) => unknown;

interface CachedResponse {
  readonly status: number;
  readonly message: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer;
}

const OPTION_KEYS = new Set(['timeout', 'extra', 'lock', 'key']);
/** Hop-by-hop or per-response headers: never replayed. */
const DROPPED_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding', 'content-length']);

function isOptions(v: unknown): v is ViewCacheOptions {
  return typeof v === 'object' && v !== null && !isSample(v) && Object.getPrototypeOf(v) === Object.prototype;
}

function checkOptions(o: ViewCacheOptions, where: string): void {
  for (const k of Object.keys(o)) if (!OPTION_KEYS.has(k)) throw new CacheopsConfigError(`${where}.${k}`, `unknown option (known: ${[...OPTION_KEYS].join(', ')})`);
  if (o.timeout !== undefined) checkTimeout(o.timeout, `${where}.timeout`);
  if (o.extra !== undefined && typeof o.extra !== 'function') throw new CacheopsConfigError(`${where}.extra`, 'expected a function of the request');
  if (o.lock !== undefined && typeof o.lock !== 'boolean') throw new CacheopsConfigError(`${where}.lock`, 'expected true or false');
  if (o.key !== undefined && (typeof o.key !== 'string' || o.key === '')) throw new CacheopsConfigError(`${where}.key`, 'expected a non-empty string');
}

function headerText(v: number | string | readonly string[]): string | string[] {
  return Array.isArray(v) ? v.map(String) : String(v);
}

/** Lower-cased headers of `res` plus those given to writeHead directly. */
function collectHeaders(res: ServerResponse, given: unknown): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(res.getHeaders())) if (v !== undefined) out[k.toLowerCase()] = headerText(v);
  if (Array.isArray(given)) {
    // writeHead(status, ['name', 'value', ...]) — the raw-array form.
    for (let i = 0; i + 1 < given.length; i += 2) out[String(given[i]).toLowerCase()] = String(given[i + 1]);
  } else if (typeof given === 'object' && given !== null) {
    for (const [k, v] of Object.entries(given as OutgoingHttpHeaders)) if (v !== undefined) out[k.toLowerCase()] = headerText(v);
  }
  return out;
}

function mayStore(r: CachedResponse): boolean {
  if (r.status < 200 || r.status > 299) return false;
  if (r.headers['set-cookie'] !== undefined) return false;
  const cc = String(r.headers['cache-control'] ?? '').toLowerCase();
  return !/\b(no-store|private)\b/.test(cc);
}

type Outcome = { readonly kind: 'complete'; readonly response: CachedResponse } | { readonly kind: 'skip' };

/**
 * Runs the handler against the real response, capturing what it sends.
 * Resolves when the response ended (or was abandoned); the client is served as usual.
 */
function runAndCapture(handler: Handler<IncomingMessage, ServerResponse, AnyNext>, req: IncomingMessage, res: ServerResponse, next: AnyNext | undefined): Promise<Outcome> {
  return new Promise<Outcome>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let head: { status: number; message: string; headers: Record<string, string | string[]> } | undefined;
    let settled = false;
    const target = res as unknown as Record<'writeHead' | 'write' | 'end', unknown>;
    const originals = { writeHead: res.writeHead, write: res.write, end: res.end };
    const restore = (): void => {
      for (const k of ['writeHead', 'write', 'end'] as const) if (target[k] !== originals[k]) delete target[k];
    };
    const settle = (outcome: Outcome | { readonly kind: 'error'; readonly error: unknown }): void => {
      if (settled) return;
      settled = true;
      restore();
      res.off('close', onClose);
      if (outcome.kind === 'error') reject(outcome.error);
      else resolve(outcome);
    };
    const onClose = (): void => settle({ kind: 'skip' });
    res.on('close', onClose);

    const take = (chunk: unknown, encoding: unknown): void => {
      if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
      if (typeof chunk === 'string') chunks.push(Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'));
      else if (chunk instanceof Uint8Array) chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    };
    // end() and the first write() send the head through this.writeHead (Node's _implicitHeader), so it sees every head.
    target.writeHead = function writeHead(this: ServerResponse, code: number, ...rest: unknown[]) {
      const [first, second] = rest;
      head = { status: code, message: typeof first === 'string' ? first : '', headers: collectHeaders(res, typeof first === 'string' ? second : first) };
      return (originals.writeHead as (...a: unknown[]) => ServerResponse).call(this, code, ...rest);
    };
    target.write = function write(this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      take(chunk, rest[0]);
      return (originals.write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    };
    target.end = function end(this: ServerResponse, ...args: unknown[]) {
      take(args[0], args[1]);
      const result = (originals.end as (...a: unknown[]) => ServerResponse).apply(this, args);
      const h = head ?? { status: res.statusCode, message: res.statusMessage ?? '', headers: collectHeaders(res, undefined) };
      settle({ kind: 'complete', response: { status: h.status, message: h.message, headers: h.headers, body: Buffer.concat(chunks) } });
      return result;
    };
    // next(), next(err), next('route'): the response is someone else's, nothing to cache.
    const wrappedNext = (...args: unknown[]): void => {
      settle({ kind: 'skip' });
      next?.(...args);
    };
    try {
      Promise.resolve(handler(req, res, wrappedNext)).catch((error: unknown) => settle({ kind: 'error', error }));
    } catch (error) {
      settle({ kind: 'error', error });
    }
  });
}

/**
 * Sends a cached response (headers only for HEAD; 304 when the client's ETag matches).
 * Through setHeader + end rather than writeHead, so that middleware wrapping
 * `res.end` can still adjust the response as it would for a fresh one.
 */
function replay(req: IncomingMessage, res: ServerResponse, cached: CachedResponse): void {
  for (const [k, v] of Object.entries(cached.headers)) if (!DROPPED_HEADERS.has(k)) res.setHeader(k, v);
  const etag = cached.headers['etag'];
  const ifNoneMatch = req.headers['if-none-match'];
  if (typeof etag === 'string' && typeof ifNoneMatch === 'string' && ifNoneMatch.split(/\s*,\s*/).includes(etag)) {
    res.removeHeader('content-type');
    res.statusCode = 304;
    res.end();
    return;
  }
  res.statusCode = cached.status;
  if (cached.message) res.statusMessage = cached.message;
  res.setHeader('content-length', String(cached.body.length));
  if (req.method === 'HEAD') res.end();
  else res.end(cached.body);
}

function decodeResponse(bytes: Buffer): { value: CachedResponse | undefined } | undefined {
  const raw = decodeRaw(bytes)?.value as Record<string, unknown> | undefined;
  if (typeof raw !== 'object' || raw === null || typeof raw['status'] !== 'number') return undefined;
  const { status, message, headers, body } = raw;
  if (!(body instanceof Uint8Array) || typeof headers !== 'object' || headers === null) return undefined;
  return { value: { status, message: typeof message === 'string' ? message : '', headers: headers as Record<string, string | string[]>, body: Buffer.from(body.buffer, body.byteOffset, body.byteLength) } };
}

/** A response as stored (only complete, cacheable responses are: the others are NotStored). */
const RESPONSE_CODEC: ValueCodec<CachedResponse | undefined> = {
  encode: (response) => encodeRaw(response),
  decode: decodeResponse,
};

/** The dependencies and options of `cachedView(opts)` / `cachedViewAs(...samples, opts)`; returns the decorator. */
export function cachedViewFactory(core: CacheopsCore, samplesAndOptions: readonly (Sample | ViewCacheOptions)[], withSamples: boolean): ViewDecorator {
  const what = withSamples ? 'cachedViewAs' : 'cachedView';
  const last = samplesAndOptions[samplesAndOptions.length - 1];
  const options: ViewCacheOptions = isOptions(last) ? last : {};
  const samples = isOptions(last) ? samplesAndOptions.slice(0, -1) : samplesAndOptions;
  checkOptions(options, what);
  if (withSamples && samples.length === 0) throw new CacheopsConfigError(what, 'give at least one sample (a model, scoped model, instance or { model, where })');
  if (!withSamples && samples.length > 0) throw new CacheopsConfigError(what, 'takes only options; use cachedViewAs for samples');
  const { deps, models } = withSamples ? sampleDependencies(core, samples, what) : { deps: [], models: [] };
  const timeouts = models.map((m) => profileFor(core.config, m.name)?.timeout).filter((t): t is number => t !== undefined);
  const timeout = options.timeout ?? (timeouts.length ? Math.min(...timeouts) : core.config.defaultTimeout);
  const lock = options.lock ?? false;
  const site = options.key ?? declarationSite();
  const tables = deps.map((d) => d.table);

  return <Req extends IncomingMessage, Res extends ServerResponse, Next extends NextLike>(handler: Handler<Req, Res, Next>): CachedHandler<Req, Res, Next> => {
    if (typeof handler !== 'function') throw new CacheopsConfigError(what, 'expected a handler function (req, res, next)');
    const identity = functionIdentity(site, handler);
    const name = handler.name || 'view';
    const hashOf = (path: string, extras: readonly unknown[]): string => {
      const trimmed = [...extras];
      while (trimmed.length > 0 && trimmed[trimmed.length - 1] === undefined) trimmed.pop();
      return createHash('sha1').update('view\0').update(identity).update('\0').update(path).update('\0').update(stableStringify(trimmed)).digest('hex');
    };
    const prefix = (): string => core.prefixFor(tables);
    const plain = handler as unknown as Handler<IncomingMessage, ServerResponse, AnyNext>;

    const cachedHandler = (async (req: Req, res: Res, nextArg?: Next): Promise<void> => {
      const next = nextArg as unknown as AnyNext | undefined;
      const method = (req.method ?? 'GET').toUpperCase();
      const admission = method === 'GET' || method === 'HEAD' ? core.gate.admit() : undefined;
      if (!admission) {
        await plain(req, res, next ?? (() => undefined));
        return;
      }
      const path = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '/';
      const hash = hashOf(path, options.extra ? [options.extra(req)] : []);
      const p = prefix();
      let outcome: Outcome | undefined;
      try {
        const value = await core.readCached<CachedResponse | undefined>({
          prefix: p,
          hash,
          deps,
          timeout,
          staleWhileRevalidate: 0,
          lock,
          admission,
          codec: RESPONSE_CODEC,
          near: undefined,
          localGet: false,
          sample: false,
          op: 'view',
          fn: name,
        }, async () => {
          outcome = await runAndCapture(plain, req, res, next);
          const response = outcome.kind === 'complete' ? outcome.response : undefined;
          // Answered, not stored: the read engine gives the dog-pile lease back through its token.
          return method !== 'GET' || response === undefined || !mayStore(response) ? new NotStored(response) : response;
        });
        if (outcome === undefined && value !== undefined) replay(req, res, value);
      } catch (error) {
        if (outcome !== undefined || res.headersSent) {
          // The client has its response; a failed store must not turn into a second one.
          core.config.logger(`view cache: storing ${path} failed`, error);
          return;
        }
        if (next) next(error);
        else throw error;
      }
    }) as CachedHandler<Req, Res, Next>;

    cachedHandler.invalidate = async (path: string, ...extra: unknown[]): Promise<boolean> => {
      if (typeof path !== 'string') throw new CacheopsError(`${what}(...).invalidate: expected the request path (with its query string), got ${typeof path}`);
      return core.store.deleteValue(prefix(), hashOf(path, extra));
    };
    return cachedHandler;
  };
}
