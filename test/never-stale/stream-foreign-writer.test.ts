/**
 * Foreign writers under load on PostgreSQL: four plain pg clients update,
 * insert and delete rows of a cached table while the application reads it
 * through the cache, with the consistency sampler at rate 1.0. After
 * quiescence (a marker write seen through the stream: it is decoded after
 * every earlier commit), every query of the catalogue, read through the cache,
 * equals the database, and the sampler finds nothing stale. Without the stream
 * the same run leaves stale values (the test can fail). The soak itself:
 * helpers/stream-soak.ts.
 */
import test from 'ava';
import { dialects } from '../helpers/env';
import { Client, startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres';
import { privateSequelize } from '../helpers/stream-models';
import { soakTests } from '../helpers/stream-soak';

const run = dialects().includes('postgres') ? test.serial : test.serial.skip;
let server: PrivatePostgres;

test.before(async () => {
  if (!dialects().includes('postgres')) return;
  server = await startPrivatePostgres();
  const admin = await server.client();
  await admin.query('CREATE DATABASE soak');
  await admin.end();
});

test.after.always(async () => {
  await server?.stop();
});

soakTests(run, () => ({
  sequelize: () => privateSequelize(server.port, 'soak'),
  prepare: async (sequelize, table) => { await sequelize.query(`ALTER TABLE "${table}" REPLICA IDENTITY FULL`); },
  changeStream: (label) => ({ slot: `soak_${label}`, pollIntervalMs: 20 }),
  writer: async () => {
    const c = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'soak' });
    await c.connect();
    return c;
  },
  quote: (name) => `"${name}"`,
  param: (n) => `$${n}`,
}));
