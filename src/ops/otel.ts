/**
 * Optional OpenTelemetry. When `@opentelemetry/api` can be required (an
 * optional peer dependency), each installation reports:
 *
 * - a span `cacheops.read` per cached read: `cacheops.op`, `cacheops.model` or
 *   `cacheops.function`, `cacheops.hit`; on a miss the query (or function) runs
 *   inside it, so database spans nest under it;
 * - a span `cacheops.invalidate` per invalidation sent to Redis (a write, after
 *   its commit; invalidateObj/Model/Dict): `cacheops.tables`, `cacheops.rows`
 *   (row states, 0 for model-wide), `cacheops.keys_dropped`, `cacheops.degraded`;
 *   `cacheops.invalidate_all` likewise;
 * - observable counters read from `cacheops.stats()` at each collection:
 *   `cacheops.hits`, `cacheops.misses`, `cacheops.stores`,
 *   `cacheops.invalidations`, and `cacheops.degraded.time` (seconds during which
 *   Redis was out: while the store's circuit breaker was open).
 *
 * Without the package, or with it but no SDK registered when `installCacheops`
 * runs (spans for a registered tracer provider, counters for a meter provider),
 * nothing is wrapped or registered: the require is tried once per process and
 * the installation keeps its own methods, so the hit path is what it is without
 * this file (see `npm run bench`). The API's types are
 * not imported: the few calls used are declared structurally below, so the
 * emitted declarations need no `@opentelemetry/api` either.
 */
import type { CacheopsCore } from '../core/cacheops-core';

// ---- the part of @opentelemetry/api used --------------------------------------

type Attributes = Record<string, string | number | boolean | readonly string[] | undefined>;
interface OtelSpan {
  setAttribute(key: string, value: string | number | boolean | readonly string[]): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  recordException(exception: unknown): unknown;
  end(): void;
}
type OtelContext = unknown;
interface OtelTracer {
  startSpan(name: string, options?: { attributes?: Attributes; kind?: number }, context?: OtelContext): OtelSpan;
}
interface ObservableResult {
  observe(value: number, attributes?: Attributes): void;
}
type ObservableCallback = (result: ObservableResult) => void;
interface ObservableCounter {
  addCallback(callback: ObservableCallback): void;
  removeCallback(callback: ObservableCallback): void;
}
interface OtelMeter {
  createObservableCounter(name: string, options?: { description?: string; unit?: string }): ObservableCounter;
  createObservableGauge(name: string, options?: { description?: string; unit?: string }): ObservableCounter;
}
/** What cacheops uses of `@opentelemetry/api`. */
export interface OtelApi {
  readonly trace: {
    getTracerProvider(): unknown;
    getTracer(name: string, version?: string): OtelTracer;
    setSpan(context: OtelContext, span: OtelSpan): OtelContext;
  };
  readonly context: {
    active(): OtelContext;
    with<R>(context: OtelContext, fn: () => R): R;
  };
  readonly metrics: { getMeterProvider(): unknown; getMeter(name: string, version?: string): OtelMeter };
  readonly SpanStatusCode: { readonly ERROR: number };
}

// ---- loading ---------------------------------------------------------------------

let loaded: { api: OtelApi | undefined } | undefined;

/** `@opentelemetry/api`, or undefined when it is not installed (tried once per process). */
export function loadOtelApi(load: (name: string) => unknown = require): OtelApi | undefined {
  if (load !== require) return tryLoad(load);
  loaded ??= { api: tryLoad(load) };
  return loaded.api;
}

function tryLoad(load: (name: string) => unknown): OtelApi | undefined {
  try {
    const api = load('@opentelemetry/api') as Partial<OtelApi> | undefined;
    return api?.trace && api.context && api.metrics ? (api as OtelApi) : undefined;
  } catch {
    return undefined;
  }
}

// ---- instrumentation ------------------------------------------------------------

const NAME = 'sequelize-cacheops';

/**
 * Is an SDK registered behind this global provider? The API's defaults are no-op
 * providers (the tracer one behind a proxy); with them nothing would be recorded,
 * so the installation is left as it is.
 */
function isRegistered(provider: unknown): boolean {
  const p = provider as { getDelegate?: () => unknown } | undefined;
  const real = typeof p?.getDelegate === 'function' ? p.getDelegate() : p;
  const name = (real as { constructor?: { name?: string } } | undefined)?.constructor?.name ?? 'Noop';
  return !name.startsWith('Noop');
}
const INTERNAL = 0; // SpanKind.INTERNAL

type ReadCached = CacheopsCore['readCached'];
type StoreInvalidate = CacheopsCore['store']['invalidate'];
type StoreInvalidateAll = CacheopsCore['store']['invalidateAll'];

/** Tracks the time during which Redis calls fail. */
class DegradedClock {
  private since: number | undefined;
  private total = 0;
  get running(): boolean {
    return this.since !== undefined;
  }
  failed(): void {
    this.since ??= Date.now();
  }
  ok(): void {
    if (this.since === undefined) return;
    this.total += Date.now() - this.since;
    this.since = undefined;
  }
  seconds(): number {
    return (this.total + (this.since === undefined ? 0 : Date.now() - this.since)) / 1000;
  }
}

function endWith(span: OtelSpan, api: OtelApi, error: unknown): never {
  span.recordException(error);
  span.setStatus({ code: api.SpanStatusCode.ERROR, message: (error as Error)?.message ?? String(error) });
  span.end();
  throw error;
}

/**
 * Instruments one installation when the API is there (null: do not); returns whether it did.
 * The wrappers are own properties of the core and its store, so that the
 * methods of an installation without OpenTelemetry are never touched.
 */
export function instrument(core: CacheopsCore, api: OtelApi | null | undefined = loadOtelApi()): boolean {
  if (!api) return false;
  const tracing = isRegistered(api.trace.getTracerProvider());
  const metering = isRegistered(api.metrics.getMeterProvider());
  if (tracing) traceCalls(core, api);
  if (metering) meterCounters(core, api);
  return tracing || metering;
}

function traceCalls(core: CacheopsCore, api: OtelApi): void {
  const tracer = api.trace.getTracer(NAME);
  const store = core.store;
  const db = core.db;

  const readCached: ReadCached = core.readCached.bind(core);
  core.readCached = function tracedRead(plan, compute) {
    const parent = api.context.active();
    const span = tracer.startSpan('cacheops.read', {
      kind: INTERNAL,
      attributes: { 'cacheops.op': plan.op, 'cacheops.model': plan.model?.name, 'cacheops.function': plan.fn, 'db.name': db },
    }, parent);
    // A miss is a read whose query (or function) ran: it runs in the span's context.
    let computed = false;
    const traced = (): ReturnType<typeof compute> => { computed = true; return api.context.with(api.trace.setSpan(parent, span), compute); };
    return readCached(plan, traced).then((value) => {
      span.setAttribute('cacheops.hit', !computed);
      span.end();
      return value;
    }, (error: unknown) => endWith(span, api, error));
  } as ReadCached;

  const invalidate: StoreInvalidate = store.invalidate.bind(store);
  store.invalidate = function tracedInvalidate(prefix, items) {
    const span = tracer.startSpan('cacheops.invalidate', {
      kind: INTERNAL,
      attributes: {
        'cacheops.tables': items.map((i) => i.table),
        'cacheops.rows': items.reduce((n, i) => n + (i.rows === 'all' ? 0 : i.rows.length), 0),
        'cacheops.model_wide': items.some((i) => i.rows === 'all'),
        'db.name': db,
      },
    }, api.context.active());
    return invalidate(prefix, items).then((deleted) => {
      span.setAttribute('cacheops.keys_dropped', Math.max(0, deleted));
      span.setAttribute('cacheops.degraded', deleted < 0);
      span.end();
      return deleted;
    }, (error: unknown) => endWith(span, api, error));
  } as StoreInvalidate;

  const invalidateAll: StoreInvalidateAll = store.invalidateAll.bind(store);
  store.invalidateAll = function tracedInvalidateAll(prefix) {
    const span = tracer.startSpan('cacheops.invalidate_all', { kind: INTERNAL, attributes: { 'cacheops.prefix': prefix ?? '', 'db.name': db } }, api.context.active());
    return invalidateAll(prefix).then((deleted) => {
      span.setAttribute('cacheops.keys_dropped', Math.max(0, deleted));
      span.end();
      return deleted;
    }, (error: unknown) => endWith(span, api, error));
  } as StoreInvalidateAll;

}

function meterCounters(core: CacheopsCore, api: OtelApi): void {
  const store = core.store;
  const db = core.db;
  // Degraded time: while the store's circuit breaker is open (from the failure that opened it
  // to the probe that closed it). Healthy calls pay nothing.
  const clock = new DegradedClock();
  store.breaker.watch((open) => (open ? clock.failed() : clock.ok()));

  const meter = api.metrics.getMeter(NAME);
  const attributes: Attributes = { 'db.name': db, 'cacheops.prefix': typeof core.config.prefix === 'string' ? core.config.prefix : '(function)' };
  const counters: [string, string, () => number, string?][] = [
    ['cacheops.hits', 'cached reads answered from the cache', () => core.counters.hits],
    ['cacheops.misses', 'cached reads that ran their query or function', () => core.counters.misses],
    ['cacheops.stores', 'values stored in the cache', () => core.counters.stores],
    ['cacheops.invalidations', 'invalidations (one per table and write)', () => core.counters.invalidations],
    ['cacheops.degraded.time', 'time during which Redis calls failed', () => clock.seconds(), 's'],
    ['cacheops.stream.events', 'changes of other programs the change stream invalidated', () => core.stream?.stats.events ?? 0],
  ];
  // The change stream's gauges report only once known (null: no stream, nothing read yet).
  const gauges: [string, string, () => number | null, string][] = [
    ['cacheops.stream.lag', 'milliseconds from commit to invalidation of the last change-stream batch', () => core.stream?.stats.lagMs ?? null, 'ms'],
    ['cacheops.stream.retained', 'bytes of WAL the change stream\'s slot retains', () => core.stream?.stats.retainedBytes ?? null, 'By'],
  ];
  const registered = [
    ...counters.map(([name, description, value, unit]) => {
      const counter = meter.createObservableCounter(name, { description, ...(unit ? { unit } : {}) });
      const callback: ObservableCallback = (result) => result.observe(value(), attributes);
      counter.addCallback(callback);
      return () => counter.removeCallback(callback);
    }),
    ...gauges.map(([name, description, value, unit]) => {
      const gauge = meter.createObservableGauge(name, { description, unit });
      const callback: ObservableCallback = (result) => {
        const v = value();
        if (v !== null) result.observe(v, attributes);
      };
      gauge.addCallback(callback);
      return () => gauge.removeCallback(callback);
    }),
  ];
  // A closed installation stops reporting (and is not kept alive by the meter).
  const close = core.close.bind(core);
  core.close = async function closeAndUnregister() {
    for (const remove of registered) remove();
    await close();
  };
}
