/**
 * The change stream on MariaDB (BENCH_SECTIONS=stream, BENCH_DIALECTS with
 * mariadb): a private mariadbd with a ROW binlog on a free port and in a temp
 * directory (as the tests start it), read by the consumer as a replica.
 * The binlog's timestamps have one-second resolution, so the lag is measured
 * from the bench's side: the writer's COMMIT returning to the invalidation.
 */
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';
import { installCacheops } from 'sequelize-cacheops';
import { mariadbUnavailable, startPrivateMariadb, type MariaConnection, type PrivateMariadb } from '../test/helpers/private-mariadb';
import { costs, lagAt, sustained, SEEDED_ROWS, type Costs, type ForeignWriter, type LagResult, type StreamApp, type SustainedResult } from './stream-measure';
import { forgetPrefix } from './redis-probe';

const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

export interface MariadbStreamResults {
  readonly version: string;
  readonly lags: LagResult[];
  readonly sustained: SustainedResult[];
  readonly costs: Costs;
}

function defineItem(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('Item', { name: DataTypes.STRING, n: DataTypes.INTEGER }, { tableName: 'bench_stream_items', timestamps: false });
}

async function openApp(server: PrivateMariadb, prefix: string, stream: boolean): Promise<StreamApp & { close(): Promise<void> }> {
  const sequelize = new Sequelize('bench', 'root', '', { host: '127.0.0.1', port: server.port, dialect: 'mysql', logging: false });
  const Item = defineItem(sequelize);
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix, profiles: { Item: { ops: 'all' } }, changeStream: stream, logger: () => undefined,
  });
  await cacheops.changeStreamReady();
  return {
    sequelize, Item, cacheops,
    async close() {
      await cacheops.close();
      await sequelize.close();
    },
  };
}

async function writers(server: PrivateMariadb, count: number): Promise<ForeignWriter[]> {
  const out: ForeignWriter[] = [];
  for (let i = 0; i < count; i += 1) {
    const c: MariaConnection = await server.client('bench');
    out.push({
      async rename(id, name) { await c.query('UPDATE bench_stream_items SET name = ? WHERE id = ?', [name, id]); },
      end: () => c.end(),
    });
  }
  return out;
}

/** undefined: no mariadbd here (said on the console). */
export async function runMariadbStream(writes: number, seconds: number, costRounds: number): Promise<MariadbStreamResults | undefined> {
  const missing = mariadbUnavailable();
  if (missing !== undefined) {
    console.log(`  MariaDB change stream skipped: ${missing}`);
    return undefined;
  }
  const server = await startPrivateMariadb();
  const prefix = `bench-stream-mariadb-${process.pid}:`;
  try {
    const root = await server.client();
    const [rows] = await root.query('SELECT VERSION() AS v');
    const version = String((rows as { v: string }[])[0]!.v).split('-')[0]!;
    await root.query('CREATE DATABASE bench');
    await root.end();
    const setup = new Sequelize('bench', 'root', '', { host: '127.0.0.1', port: server.port, dialect: 'mysql', logging: false });
    const Item = defineItem(setup);
    await Item.sync({ force: true });
    await Item.bulkCreate(Array.from({ length: SEEDED_ROWS }, (_, i) => ({ name: `r${i}`, n: i })));
    await setup.close();

    const app = await openApp(server, prefix, true);
    const lags: LagResult[] = [];
    const rates: SustainedResult[] = [];
    try {
      for (const count of [1, 8]) {
        const ws = await writers(server, count);
        lags.push(await lagAt(`mariadb ${version}`, app, ws, writes));
        rates.push(await sustained(`mariadb ${version}`, app, ws, seconds));
        for (const w of ws) await w.end();
      }
    } finally {
      await app.close();
    }
    const measured = await costs((on) => openApp(server, prefix, on), costRounds, 300);
    return { version, lags, sustained: rates, costs: measured };
  } finally {
    const cleanup = await openApp(server, prefix, false).catch(() => undefined);
    await forgetPrefix(cleanup?.cacheops, prefix);
    await cleanup?.close();
    await server.stop();
  }
}
