/**
 * CLS namespaces for `Sequelize.useCLS`: none, cls-hooked, and the package's
 * AsyncLocalStorage one (createAsyncLocalNamespace). Sequelize keeps its
 * namespace in a static field and cls-hooked's async hook cannot be removed
 * once enabled, so each variant runs in a process of its own; the variants
 * alternate over several rounds and the medians of the rounds are compared.
 *
 * Measured in each process (SQLite in memory, cacheops installed):
 *   hit       a cached findByPk outside any transaction (what every request pays:
 *             cls-hooked's hook runs on every promise of the process)
 *   tx        a managed transaction with two reads (the namespace carries it)
 *   async100  a chain of 100 awaited promises (no database, no Redis)
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';
import { createAsyncLocalNamespace, installCacheops } from 'sequelize-cacheops';
import { interleave, median, ratio, table, us } from './measure';
import { forgetPrefix } from './redis-probe';

export const CLS_VARIANTS = ['none', 'cls-hooked', 'async-local'] as const;
export type ClsVariant = (typeof CLS_VARIANTS)[number];
type Figures = Record<'hit' | 'tx' | 'async100', number>;

async function useVariant(variant: ClsVariant): Promise<void> {
  if (variant === 'cls-hooked') {
    const { createNamespace } = await import('cls-hooked');
    Sequelize.useCLS(createNamespace(`bench-${randomBytes(4).toString('hex')}`));
  } else if (variant === 'async-local') {
    Sequelize.useCLS(createAsyncLocalNamespace());
  }
}

/** One process's measure (run as `tsx bench/cls.ts <variant> <iterations>`). */
async function measureHere(variant: ClsVariant, iterations: number): Promise<Figures> {
  await useVariant(variant);
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const Item: ModelStatic<Model> = sequelize.define('Item', { name: DataTypes.STRING, n: DataTypes.INTEGER });
  await sequelize.sync();
  await Item.bulkCreate(Array.from({ length: 100 }, (_, i) => ({ name: `item ${i}`, n: i })));
  const prefix = `bench-cls-${randomBytes(4).toString('hex')}:`;
  const cacheops = installCacheops(sequelize, { redis: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', prefix, profiles: { Item: { ops: 'all' } } });
  try {
    const samples = await interleave({
      hit: (i) => Item.findByPk((i % 100) + 1),
      tx: (i) => sequelize.transaction(async () => {
        await Item.findByPk((i % 100) + 1);
        await Item.count({ where: { n: i % 100 } });
      }),
      async100: async () => {
        let x = 0;
        for (let k = 0; k < 100; k += 1) x += await Promise.resolve(k);
        return x;
      },
    }, iterations, Math.min(iterations, 300));
    return { hit: median(samples.hit), tx: median(samples.tx), async100: median(samples.async100) };
  } finally {
    await forgetPrefix(cacheops, prefix);
    await cacheops.close();
    await sequelize.close();
  }
}

function runChild(variant: ClsVariant, iterations: number): Promise<Figures> {
  const tsx = pathToFileURL(join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', tsx, __filename, variant, String(iterations)], { env: process.env }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${variant}: ${stderr || error.message}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Figures);
    });
  });
}

export interface ClsResult {
  readonly variant: ClsVariant;
  readonly figures: Figures;
}

/** Runs every variant `rounds` times, alternating; the median of the rounds per variant. */
export async function measureCls(iterations: number, rounds: number): Promise<ClsResult[]> {
  const runs = new Map<ClsVariant, Figures[]>(CLS_VARIANTS.map((v) => [v, []]));
  for (let r = 0; r < rounds; r += 1) {
    for (const variant of r % 2 ? [...CLS_VARIANTS].reverse() : CLS_VARIANTS) runs.get(variant)!.push(await runChild(variant, iterations));
  }
  return CLS_VARIANTS.map((variant) => {
    const all = runs.get(variant)!;
    return { variant, figures: { hit: median(all.map((f) => f.hit)), tx: median(all.map((f) => f.tx)), async100: median(all.map((f) => f.async100)) } };
  });
}

export function printCls(results: readonly ClsResult[]): void {
  const base = results.find((r) => r.variant === 'none')!.figures;
  const hooked = results.find((r) => r.variant === 'cls-hooked')!.figures;
  // Without a namespace the reads of a managed transaction do not join it: tx/none is no like-for-like
  // comparison, tx/cls-hooked is.
  console.log(table(
    ['Sequelize.useCLS', 'hit µs', 'hit/none', 'hit/cls-hooked', 'managed tx µs', 'tx/cls-hooked', '100 awaits µs', 'awaits/none', 'awaits/cls-hooked'],
    results.map(({ variant, figures: f }) => [variant, us(f.hit), ratio(f.hit / base.hit), ratio(f.hit / hooked.hit), us(f.tx), ratio(f.tx / hooked.tx),
      us(f.async100), ratio(f.async100 / base.async100), ratio(f.async100 / hooked.async100)]),
  ));
}

if (require.main === module) {
  const [variant, n] = process.argv.slice(2);
  if (!CLS_VARIANTS.includes(variant as ClsVariant)) throw new Error(`variant: one of ${CLS_VARIANTS.join(', ')}`);
  measureHere(variant as ClsVariant, Number(n ?? 1000)).then((f) => {
    console.log(JSON.stringify(f));
  }, (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
