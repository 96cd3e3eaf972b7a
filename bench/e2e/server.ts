/**
 * One server of the end-to-end benchmark, in a process of its own: the app
 * (app.ts) on the tables `argv[3]`, with the cache off, on, or on with the
 * near cache (`argv[2]`: off | on | near). Tells its parent the port it
 * listens on; closes when the parent says `close` or goes away.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { installCacheops, type Cacheops } from 'sequelize-cacheops';
import { defineAssocModels } from '../assoc-models';
import { openSequelize, type BenchDialect } from '../models';
import { forgetPrefix } from '../redis-probe';
import { createApp } from './app';

async function main(): Promise<void> {
  const [mode, tables, dialect] = process.argv.slice(2) as ['off' | 'on' | 'near', string, BenchDialect];
  const sequelize = openSequelize(dialect, process.env['BENCH_SQLITE_STORAGE']);
  const models = defineAssocModels(sequelize, tables);
  let cacheops: Cacheops | undefined;
  const prefix = `bench-${randomBytes(4).toString('hex')}-e2e-${mode}:`;
  if (mode !== 'off') {
    const profile = { ops: 'all' as const, near: mode === 'near' };
    cacheops = installCacheops(sequelize, {
      redis: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', prefix,
      profiles: Object.fromEntries(Object.keys(models).map((name) => [name, profile])),
    });
    await cacheops.ready();
  }
  const server = createApp(models).listen(0, '127.0.0.1', () => {
    process.send?.({ port: (server.address() as AddressInfo).port });
  });
  const close = async (): Promise<void> => {
    server.close();
    server.closeAllConnections();
    if (cacheops) {
      // Every key of the run's prefix goes (invalidateAll keeps the epochs hash).
      await forgetPrefix(cacheops, prefix);
      await cacheops.close();
    }
    await sequelize.close();
    process.exit(0);
  };
  process.on('message', (m) => { if (m === 'close') void close(); });
  process.on('disconnect', () => { void close(); });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
