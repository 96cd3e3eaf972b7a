/**
 * OpenTelemetry's cost on the hit path: a cached findByPk with
 * `@opentelemetry/api` not resolvable (absent), installed with no SDK
 * registered, and with an SDK (tracer and meter providers; spans are recorded
 * and dropped). One process per variant and round (the global providers and
 * the module resolution are per process); the medians of the rounds compared.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import Module from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { median, ratio, table, us } from './measure';
import { forgetPrefix } from './redis-probe';

export const OTEL_VARIANTS = ['absent', 'installed, no SDK', 'SDK registered'] as const;
export type OtelVariant = (typeof OTEL_VARIANTS)[number];

function hideOtel(): void {
  const mod = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const resolve = mod._resolveFilename;
  mod._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]) {
    if (request.startsWith('@opentelemetry/')) throw Object.assign(new Error(`Cannot find module '${request}'`), { code: 'MODULE_NOT_FOUND' });
    return resolve.call(this, request, ...rest);
  };
}

async function registerSdk(): Promise<void> {
  const api = await import('@opentelemetry/api');
  const { BasicTracerProvider } = await import('@opentelemetry/sdk-trace-base');
  const { MeterProvider, PeriodicExportingMetricReader, InMemoryMetricExporter, AggregationTemporality } = await import('@opentelemetry/sdk-metrics');
  const drop = { onStart: () => undefined, onEnd: () => undefined, forceFlush: () => Promise.resolve(), shutdown: () => Promise.resolve() };
  api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [drop] }));
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
  api.metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
}

async function measureHere(variant: OtelVariant, iterations: number): Promise<number[]> {
  if (variant === 'absent') hideOtel();
  if (variant === 'SDK registered') await registerSdk();
  // Loaded after the resolution is set up: the package tries the require at install.
  const { Sequelize, DataTypes } = await import('sequelize');
  const { installCacheops } = await import('sequelize-cacheops');
  const { interleave } = await import('./measure');
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const Item = sequelize.define('Item', { name: DataTypes.STRING });
  await sequelize.sync();
  await Item.bulkCreate(Array.from({ length: 100 }, (_, i) => ({ name: `item ${i}` })));
  const prefix = `bench-otel-${randomBytes(4).toString('hex')}:`;
  const cacheops = installCacheops(sequelize, { redis: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', prefix, profiles: { Item: { ops: 'all' } } });
  const wrapped = Object.prototype.hasOwnProperty.call(cacheops.core, 'readCached');
  if (wrapped !== (variant === 'SDK registered')) throw new Error(`${variant}: the installation is ${wrapped ? '' : 'not '}instrumented`);
  try {
    if (!wrapped) {
      const samples = await interleave({ hit: (i) => Item.findByPk((i % 100) + 1) }, iterations, Math.min(iterations, 300));
      return [median(samples.hit)];
    }
    // With the SDK, also the same installation with its wrappers taken off, interleaved in this process.
    const core = cacheops.core as unknown as Record<string, unknown> & { store: Record<string, unknown> };
    const own = { readCached: core['readCached'], close: core['close'], invalidate: core.store['invalidate'], invalidateAll: core.store['invalidateAll'], guard: core.store['guard'] };
    const on = (): void => { core['readCached'] = own.readCached; core.store['invalidate'] = own.invalidate; core.store['invalidateAll'] = own.invalidateAll; core.store['guard'] = own.guard; };
    const off = (): void => { delete core['readCached']; delete core.store['invalidate']; delete core.store['invalidateAll']; delete core.store['guard']; };
    const samples = await interleave({
      traced: (i) => { on(); return Item.findByPk((i % 100) + 1); },
      plain: (i) => { off(); return Item.findByPk((i % 100) + 1); },
    }, iterations, Math.min(iterations, 300));
    on();
    return [median(samples.traced), median(samples.plain)];
  } finally {
    await forgetPrefix(cacheops, prefix);
    await cacheops.close();
    await sequelize.close();
  }
}

function runChild(variant: OtelVariant, iterations: number): Promise<number[]> {
  const tsx = pathToFileURL(join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', tsx, __filename, String(OTEL_VARIANTS.indexOf(variant)), String(iterations)], { env: process.env }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${variant}: ${stderr || error.message}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as number[]);
    });
  });
}

export interface OtelResult {
  /** Median hit µs per variant. */
  readonly hits: readonly [OtelVariant, number][];
  /** With the SDK: the same installation with its wrappers off, interleaved in the same process. */
  readonly sdkUnwrapped: number;
}

/** Median hit µs per variant over `rounds` alternating rounds. */
export async function measureOtel(iterations: number, rounds: number): Promise<OtelResult> {
  const runs = new Map<OtelVariant, number[][]>(OTEL_VARIANTS.map((v) => [v, []]));
  for (let r = 0; r < rounds; r += 1) {
    for (const v of r % 2 ? [...OTEL_VARIANTS].reverse() : OTEL_VARIANTS) runs.get(v)!.push(await runChild(v, iterations));
  }
  return {
    hits: OTEL_VARIANTS.map((v) => [v, median(runs.get(v)!.map((f) => f[0]!))]),
    sdkUnwrapped: median(runs.get('SDK registered')!.map((f) => f[1]!)),
  };
}

export function printOtel(r: OtelResult): void {
  const base = r.hits[0]![1];
  const rows = r.hits.map(([v, hit]) => [v, us(hit), ratio(hit / base), '']);
  const traced = r.hits[2]![1];
  rows.push(['SDK registered, wrappers off', us(r.sdkUnwrapped), ratio(r.sdkUnwrapped / base), `traced/off ${ratio(traced / r.sdkUnwrapped)} (same process)`]);
  console.log(table(['@opentelemetry/api', 'hit µs', 'hit/absent', ''], rows));
}

if (require.main === module) {
  const [index, n] = process.argv.slice(2);
  const variant = OTEL_VARIANTS[Number(index)];
  if (variant === undefined) throw new Error(`variant: 0..${OTEL_VARIANTS.length - 1}`);
  measureHere(variant, Number(n ?? 1000)).then((hits) => console.log(JSON.stringify(hits)), (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
