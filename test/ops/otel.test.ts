/**
 * OpenTelemetry, with the SDK's in-memory exporters: read spans (hit/miss,
 * op, model; the miss's query runs inside), invalidation spans (tables, keys
 * dropped), counters from cacheops.stats() and the degraded time, the change
 * stream's gauges (private PostgreSQL and MariaDB servers); and without
 * @opentelemetry/api, nothing wrapped at all.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { AsyncLocalStorage } from 'node:async_hooks';
import { join } from 'node:path';
import { context, metrics, ROOT_CONTEXT, trace, type Context, type ContextManager } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { Sequelize } from 'sequelize';
import { installCacheops } from '../../src/index';
import { instrument, loadOtelApi } from '../../src/ops/otel';
import { makeBlog, defineBlog } from '../helpers/models';
import { dialects, rawRedis, redisUrl, uniquePrefix } from '../helpers/env';
import { startPrivateRedis } from '../helpers/private-redis';
import { Client as PgClient, startPrivatePostgres } from '../helpers/private-postgres';
import { mariadbUnavailable, startPrivateMariadb } from '../helpers/private-mariadb';
import { defineItem, privateSequelize } from '../helpers/stream-models';

/** A context manager on AsyncLocalStorage (what @opentelemetry/context-async-hooks provides), so spans nest across awaits. */
class TestContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  active(): Context { return this.storage.getStore() ?? ROOT_CONTEXT; }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return this.storage.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    return ((...args: unknown[]) => this.with(ctx, target as (...a: unknown[]) => unknown, undefined, ...args)) as T;
  }
  enable(): this { return this; }
  disable(): this { return this; }
}

// The SDK is registered before any installation, as an application does at start.
context.setGlobalContextManager(new TestContextManager());
const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));

/** The last collected value of a counter for one prefix. */
async function counter(name: string, prefix: string): Promise<number | undefined> {
  metricExporter.reset();
  await reader.forceFlush();
  let value: number | undefined;
  for (const rm of metricExporter.getMetrics()) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        if (m.descriptor.name !== name) continue;
        for (const p of m.dataPoints) if (p.attributes['cacheops.prefix'] === prefix) value = p.value as number;
      }
    }
  }
  return value;
}

async function valueKeys(prefix: string): Promise<number> {
  const redis = rawRedis();
  let n = 0;
  for await (const page of redis.scanStream({ match: `${prefix}cacheops:{*}:q:*`, count: 1000 })) n += (page as string[]).length;
  redis.disconnect();
  return n;
}

test.serial('loaded when installed; instrumentation is own properties of the installation', (t) => {
  t.truthy(loadOtelApi(), '@opentelemetry/api is a devDependency here');
  t.is(loadOtelApi(() => { throw Object.assign(new Error("Cannot find module '@opentelemetry/api'"), { code: 'MODULE_NOT_FOUND' }); }), undefined);
  t.is(loadOtelApi(() => ({})), undefined, 'not the API');
});

test.serial('without @opentelemetry/api, or with it and no SDK registered: nothing is wrapped, reads and writes work', (t) => {
  const root = join(__dirname, '..', '..');
  const script = `
    const Module = require('node:module');
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (process.env.HIDE_OTEL && request.startsWith('@opentelemetry/')) throw Object.assign(new Error('Cannot find module ' + request), { code: 'MODULE_NOT_FOUND' });
      return resolve.call(this, request, ...rest);
    };
    const { Sequelize, DataTypes } = require('sequelize');
    const { installCacheops } = require('./dist/index.js');
    (async () => {
      const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
      const Item = sequelize.define('Item', { name: DataTypes.STRING });
      await sequelize.sync();
      const cacheops = installCacheops(sequelize, { redis: process.env.REDIS_URL, prefix: ${JSON.stringify(uniquePrefix('nootel'))}, profiles: { Item: { ops: 'all' } } });
      await Item.create({ name: 'a' });
      await Item.findAll(); await Item.findAll();
      const own = ['read', 'close'].filter((k) => Object.prototype.hasOwnProperty.call(cacheops.core, k))
        .concat(['invalidate', 'invalidateAll', 'guard'].filter((k) => Object.prototype.hasOwnProperty.call(cacheops.core.store, k)));
      console.log(JSON.stringify({ own, stats: cacheops.stats() }));
      await cacheops.invalidateAll(); await cacheops.close(); await sequelize.close();
    })().catch((e) => { console.error(e); process.exit(1); });`;
  for (const hide of ['1', '']) {
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, REDIS_URL: redisUrl, HIDE_OTEL: hide }, encoding: 'utf8' })) as { own: string[]; stats: { hits: number; misses: number } };
    t.deepEqual(out.own, [], hide ? 'not installed: no wrapper on the installation' : 'installed, no SDK: no wrapper either');
    t.is(out.stats.hits, 1);
    t.is(out.stats.misses, 1);
  }
});

for (const dialect of dialects()) {
  test.serial(`${dialect}: read spans (op, model, hit/miss; the miss's query inside), invalidation spans (tables, keys dropped), counters`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'otel');
    const prefix = blog.cacheops.core.config.prefix as string;
    try {
      const { Post, cacheops, sequelize } = blog;
      await Post.create({ title: 'a', views: 1 });
      spans.reset();
      const read = () => Post.findAll({ where: { views: 1 } });
      await read();
      await read();
      await Post.count({ where: { views: 1 } });
      const reads = spans.getFinishedSpans().filter((s) => s.name === 'cacheops.read');
      t.deepEqual(reads.map((s) => [s.attributes['cacheops.op'], s.attributes['cacheops.model'], s.attributes['cacheops.hit']]),
        [['fetch', 'Post', false], ['fetch', 'Post', true], ['count', 'Post', false]]);

      // A cached function: a span opened by its body is a child of the read's span.
      spans.reset();
      const tracer = trace.getTracer('test');
      const fn = cacheops.cachedAs(Post, { timeout: 60 })(async function postTitles(n: number) {
        return tracer.startActiveSpan('inner', async (span) => {
          const rows = await Post.findAll({ limit: n, cacheops: false } as object);
          span.end();
          return rows.map((r) => r.get('title'));
        });
      });
      t.deepEqual(await fn(5), ['a']);
      t.deepEqual(await fn(5), ['a']);
      const finished = spans.getFinishedSpans();
      const fnReads = finished.filter((s) => s.name === 'cacheops.read');
      t.deepEqual(fnReads.map((s) => [s.attributes['cacheops.op'], s.attributes['cacheops.function'], s.attributes['cacheops.hit']]),
        [['function', 'postTitles', false], ['function', 'postTitles', true]]);
      const inner = finished.filter((s) => s.name === 'inner');
      t.is(inner.length, 1, 'the body ran once');
      t.is(inner[0]!.parentSpanContext?.spanId, fnReads[0]!.spanContext().spanId, 'the miss runs inside the read span');

      // A write: one invalidation span, with the tables and the number of keys it dropped.
      spans.reset();
      const before = await valueKeys(prefix);
      t.true(before >= 3);
      await sequelize.transaction(async (tx) => {
        await Post.update({ views: 2 }, { where: { title: 'a' }, transaction: tx });
        t.is(spans.getFinishedSpans().filter((s) => s.name === 'cacheops.invalidate').length, 0, 'nothing before the commit');
      });
      const dropped = before - (await valueKeys(prefix));
      const inv = spans.getFinishedSpans().filter((s) => s.name === 'cacheops.invalidate');
      t.is(inv.length, 1);
      t.deepEqual(inv[0]!.attributes['cacheops.tables'], ['Posts']);
      t.is(inv[0]!.attributes['cacheops.keys_dropped'], dropped);
      t.true(dropped >= 3, 'the fetch, the count and the function depended on the row');
      t.is(inv[0]!.attributes['cacheops.degraded'], false);
      t.true((inv[0]!.attributes['cacheops.rows'] as number) >= 2, 'old and new state');

      spans.reset();
      await cacheops.invalidateAll();
      t.is(spans.getFinishedSpans().filter((s) => s.name === 'cacheops.invalidate_all').length, 1);

      const s = cacheops.stats();
      t.is(await counter('cacheops.hits', prefix), s.hits);
      t.is(await counter('cacheops.misses', prefix), s.misses);
      t.is(await counter('cacheops.stores', prefix), s.stores);
      t.is(await counter('cacheops.invalidations', prefix), s.invalidations);
      t.is(await counter('cacheops.degraded.time', prefix), 0);
    } finally {
      await blog.close();
    }
  });
}

test.serial('degraded time: counted while Redis fails, stops once it answers again', async (t) => {
  const redis = await startPrivateRedis();
  const prefix = uniquePrefix('oteldeg');
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const { Post } = defineBlog(sequelize);
  await sequelize.sync();
  const cacheops = installCacheops(sequelize, { redis: redis.url, prefix, degradeOnFailure: true, redisTimeout: 200, profiles: { '*': { ops: 'all' } }, logger: () => undefined });
  try {
    await Post.create({ title: 'a' });
    await Post.findAll();
    t.is(await counter('cacheops.degraded.time', prefix), 0);
    await redis.stop();
    spans.reset();
    await Post.findAll(); // falls through to the database
    await new Promise((r) => setTimeout(r, 300));
    const during = (await counter('cacheops.degraded.time', prefix))!;
    t.true(during >= 0.25, `degraded for ${during} s`);
    const read = spans.getFinishedSpans().find((s) => s.name === 'cacheops.read');
    t.is(read?.attributes['cacheops.hit'], false, 'a degraded read is a miss');
    await redis.start();
    // The clock runs while the circuit breaker is open: until its probe finds Redis again.
    for (let i = 0; i < 100 && cacheops.core.store.breaker.open; i += 1) await new Promise((r) => setTimeout(r, 50));
    await Post.findAll();
    const after = (await counter('cacheops.degraded.time', prefix))!;
    await new Promise((r) => setTimeout(r, 200));
    t.is(await counter('cacheops.degraded.time', prefix), after, 'the clock stopped');
    t.true(after >= during);
  } finally {
    await cacheops.close();
    await sequelize.close();
    await redis.stop();
  }
});

test.serial('instrument() without the API does nothing', async (t) => {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  defineBlog(sequelize);
  const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix: uniquePrefix('otelnone') });
  try {
    t.true(Object.prototype.hasOwnProperty.call(cacheops.core, 'readCached'), 'installed with the API: wrapped');
    const fresh = Object.create(Object.getPrototypeOf(cacheops.core) as object) as typeof cacheops.core;
    t.false(instrument(fresh, null));
    t.false(Object.prototype.hasOwnProperty.call(fresh, 'readCached'));
  } finally {
    await cacheops.close();
    await sequelize.close();
  }
});

/** A database with a change stream: a private server (the shared ones have no logical WAL nor binlog). */
interface StreamDb {
  readonly sequelize: Sequelize;
  /** A write by another program. */
  foreignWrite(n: number): Promise<void>;
  stop(): Promise<void>;
}

const streamDbs: Record<'postgres' | 'mysql', () => Promise<StreamDb>> = {
  async postgres() {
    const server = await startPrivatePostgres();
    const admin = await server.client();
    await admin.query('CREATE DATABASE otel');
    await admin.end();
    const sequelize = privateSequelize(server.port, 'otel');
    await defineItem(sequelize, 'otel_items').sync({ force: true });
    await sequelize.query('ALTER TABLE otel_items REPLICA IDENTITY FULL');
    await sequelize.query("INSERT INTO otel_items (name, n) VALUES ('a', 1)");
    const writer = new PgClient({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'otel' });
    await writer.connect();
    return {
      sequelize,
      async foreignWrite(n) { await writer.query('UPDATE otel_items SET n = $1 WHERE id = 1', [n]); },
      async stop() { await writer.end(); await sequelize.close(); await server.stop(); },
    };
  },
  async mysql() {
    const server = await startPrivateMariadb();
    const root = await server.client();
    await root.query('CREATE DATABASE otel');
    await root.end();
    const sequelize = new Sequelize('otel', 'root', '', { host: '127.0.0.1', port: server.port, dialect: 'mysql', logging: false });
    await defineItem(sequelize, 'otel_items').sync({ force: true });
    await sequelize.query("INSERT INTO otel_items (name, n) VALUES ('a', 1)");
    const writer = await server.client('otel');
    return {
      sequelize,
      async foreignWrite(n) { await writer.query('UPDATE otel_items SET n = ? WHERE id = 1', [n]); },
      async stop() { await writer.end(); await sequelize.close(); await server.stop(); },
    };
  },
};

for (const dialect of ['postgres', 'mysql'] as const) {
  const available = dialects().includes(dialect) && (dialect !== 'mysql' || mariadbUnavailable() === undefined);
  (available ? test.serial : test.serial.skip)(`${dialect === 'mysql' ? 'MariaDB' : 'PostgreSQL'} change stream: lag and retained gauges, events counter`, async (t) => {
    const db = await streamDbs[dialect]();
    const prefix = uniquePrefix(`otelstream${dialect}`);
    const cacheops = installCacheops(db.sequelize, {
      redis: redisUrl, prefix, profiles: { Item: { ops: 'all' } }, changeStream: { slot: `otel_${process.pid}` }, logger: () => undefined,
    });
    try {
      await cacheops.changeStreamReady();
      t.is(cacheops.stats().changeStream.role, 'consumer');
      for (let i = 0; i < 3; i += 1) await db.foreignWrite(10 + i);
      const deadline = Date.now() + 10_000;
      const s = (): ReturnType<typeof cacheops.stats>['changeStream'] => cacheops.stats().changeStream;
      // Retained bytes are looked at once a second.
      while ((s().events < 3 || s().lagMs === null || s().retainedBytes === null) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const now = s();
      t.true(now.events >= 3, `events ${now.events}`);
      t.is(await counter('cacheops.stream.events', prefix), now.events);
      t.is(await counter('cacheops.stream.lag', prefix), now.lagMs!);
      t.is(typeof now.retainedBytes, 'number');
      // Looked at again every second: the gauge gives the value of the moment it was collected.
      const before = s().retainedBytes;
      const retained = await counter('cacheops.stream.retained', prefix);
      t.true(retained === before || retained === s().retainedBytes, `gauge ${retained}, stats ${before} then ${s().retainedBytes}`);
    } finally {
      await cacheops.invalidateAll();
      await cacheops.close();
      await db.stop();
    }
  });
}
