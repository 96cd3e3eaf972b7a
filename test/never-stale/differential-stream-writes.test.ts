/**
 * The never-stale differential property (differential-run.ts) with
 * `writes: 'stream'` on a private PostgreSQL with wal_level=logical and a
 * private MariaDB with the row binlog (TEST_DIALECTS postgres, mysql): every
 * write of the steps (saves, mass writes, upserts, bulk creates, destroys,
 * transactions with savepoints) sends its plain statement and resolves once
 * the change stream invalidated its transaction; after each step every probe
 * read through the cache equals the same read around it.
 *
 *   FC_STREAM_STEPS  total steps (default 600)
 */
import test from 'ava';
import { Sequelize } from 'sequelize';
import { STREAM_WAITED_EVENT, type WaitOutcome } from '../../src/write/stream-wait';
import { dialects } from '../helpers/env';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres';
import { mariadbUnavailable, startPrivateMariadb, type PrivateMariadb } from '../helpers/private-mariadb';
import { registerDifferential } from './differential-run';

const STEPS = Number(process.env['FC_STREAM_STEPS'] ?? 600);
const TABLES = ['owners', 'items', 'notes', 'labels', 'item_labels'];
let server: PrivatePostgres | undefined;
let maria: PrivateMariadb | undefined;
const withMariadb = dialects().includes('mysql') && mariadbUnavailable() === undefined;
const outcomes: Record<WaitOutcome, number> = { done: 0, timeout: 0 };

test.before(async () => {
  if (dialects().includes('postgres')) {
    server = await startPrivatePostgres();
    const admin = await server.client();
    await admin.query('CREATE DATABASE differential');
    await admin.end();
  }
  if (withMariadb) {
    maria = await startPrivateMariadb();
    const admin = await maria.client();
    await admin.query('CREATE DATABASE differential');
    await admin.end();
  }
});

test.after.always(async () => {
  await server?.stop();
  await maria?.stop();
});

const count = (cacheops: { core: { events: { on(e: string, f: (w: { outcome: WaitOutcome }) => void): unknown } } }): void => {
  cacheops.core.events.on(STREAM_WAITED_EVENT, (w: { outcome: WaitOutcome }) => { outcomes[w.outcome] += 1; });
};

registerDifferential({
  file: __filename,
  label: 'writes stream, ',
  steps: (near) => (near ? 0 : STEPS),
  seeds: 1,
  dialects: ['postgres'],
  world: () => ({
    open: () => new Sequelize('differential', 'postgres', '', { host: '127.0.0.1', port: server!.port, dialect: 'postgres', logging: false }),
    config: { writes: 'stream', changeStream: { slot: `differential_${process.pid}`, handoverMs: 200, writeWaitMs: 5000 }, logger: () => undefined },
    afterSync: async (sequelize) => {
      for (const table of TABLES) await sequelize.query(`ALTER TABLE "${table}" REPLICA IDENTITY FULL`);
    },
    installed: count,
  }),
});

registerDifferential({
  file: __filename,
  label: 'writes stream, ',
  steps: (near) => (near ? 0 : STEPS),
  seeds: 1,
  dialects: withMariadb ? ['mysql'] : [],
  world: () => ({
    open: () => new Sequelize('differential', 'root', '', { host: '127.0.0.1', port: maria!.port, dialect: 'mysql', logging: false }),
    config: { writes: 'stream', changeStream: { handoverMs: 200, writeWaitMs: 5000 }, logger: () => undefined },
    installed: count,
  }),
});

test.serial('writes stream: the steps were resolved by the stream', (t) => {
  if (!dialects().includes('postgres') && !withMariadb) {
    t.pass('neither PostgreSQL nor MariaDB is among the tested dialects');
    return;
  }
  t.log(`waits: ${outcomes.done} resolved by the stream, ${outcomes.timeout} past the bound`);
  // Most steps read; each run's seed and its write steps wait for the stream.
  t.true(outcomes.done >= 20, `${outcomes.done} writes resolved by the stream`);
  // A bound of 5 s run out means a transaction the consumer never announced (a lost position included: see STREAM_RESET_EVENT).
  t.is(outcomes.timeout, 0);
});
