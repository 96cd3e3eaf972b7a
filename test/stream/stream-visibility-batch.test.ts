/**
 * The MariaDB consumer's batched visibility wait (untilAllCommitted): one
 * shared-lock SELECT per table answers for many transactions, and a row whose
 * writer has not committed is found exactly as the row-by-row wait finds it.
 * Runs on the shared MariaDB (no binlog needed: it is InnoDB's row locks).
 */
import test from 'ava';
import fc from 'fast-check';
import { DataTypes } from 'sequelize';
import { dialects, makeSequelize } from '../helpers/env';
import { ask, connectMysql, type MysqlConnection } from '../../src/stream/mariadb-dump';
import { untilAllCommitted, untilCommitted, type CommitTarget } from '../../src/stream/mariadb-server';

const on = dialects().includes('mysql');
const run = on ? test.serial : test.serial.skip;
if (!on) test('batched visibility wait (MariaDB)', (t) => { t.log('skipped: mysql is not in TEST_DIALECTS'); t.pass(); });

const ROWS = 40;

async function setup() {
  const sequelize = await makeSequelize('mysql', __filename);
  const Row = sequelize.define('Row', { n: DataTypes.INTEGER }, { tableName: 'visibility_rows', timestamps: false });
  const Pair = sequelize.define('Pair', { a: { type: DataTypes.INTEGER, primaryKey: true }, b: { type: DataTypes.STRING(8), primaryKey: true }, n: DataTypes.INTEGER }, { tableName: 'visibility_pairs', timestamps: false });
  await sequelize.sync({ force: true });
  await Row.bulkCreate(Array.from({ length: ROWS }, (_, i) => ({ id: i + 1, n: i })));
  await Pair.bulkCreate(Array.from({ length: 10 }, (_, i) => ({ a: i, b: `k${i}`, n: i })));
  const config = sequelize.config;
  const connect = async (): Promise<MysqlConnection> => {
    const c = await connectMysql({ host: config.host, port: Number(config.port), user: config.username, password: config.password ?? '', database: config.database });
    c.on('error', () => undefined);
    await ask(c, 'SET SESSION innodb_lock_wait_timeout = 1');
    return c;
  };
  return { sequelize, schema: config.database, connect };
}

run('rows whose writers hold their locks are returned, committed ones are not', async (t) => {
  const { sequelize, schema, connect } = await setup();
  const reader = await connect();
  const writer = await connect();
  try {
    await fc.assert(fc.asyncProperty(
      fc.uniqueArray(fc.integer({ min: 1, max: ROWS }), { minLength: 1, maxLength: 30 }),
      fc.uniqueArray(fc.integer({ min: 1, max: ROWS }), { maxLength: 2 }),
      async (asked, held) => {
        await ask(writer, 'BEGIN');
        for (const id of held) await ask(writer, 'UPDATE visibility_rows SET n = n + 1 WHERE id = ?', [id]);
        try {
          const targets: CommitTarget[] = asked.map((id) => ({ schema, table: 'visibility_rows', key: { id } }));
          const late = await untilAllCommitted(reader, targets);
          const expected = asked.filter((id) => held.includes(id)).sort((x, y) => x - y);
          t.deepEqual(late.map((x) => Number(x.key!['id'])).sort((x, y) => x - y), expected);
          // The row-by-row wait agrees on the first target.
          const first = targets[0]!;
          t.is(await untilCommitted(reader, schema, 'visibility_rows', first.key), !held.includes(Number(first.key!['id'])));
        } finally {
          await ask(writer, 'ROLLBACK');
        }
      },
    ), { numRuns: 8 });
  } finally {
    reader.destroy();
    writer.destroy();
    await sequelize.close();
  }
});

run('one statement answers for a batch of rows of one table', async (t) => {
  const { sequelize, schema, connect } = await setup();
  const reader = await connect();
  const selects = async (): Promise<number> => Number((await ask<{ Value: string }>(reader, "SHOW SESSION STATUS LIKE 'Com_select'"))[0]!.Value);
  try {
    const before = await selects();
    const late = await untilAllCommitted(reader, Array.from({ length: 30 }, (_, i) => ({ schema, table: 'visibility_rows', key: { id: i + 1 } })));
    t.deepEqual(late, []);
    t.is(await selects() - before, 1);
  } finally {
    reader.destroy();
    await sequelize.close();
  }
});

run('a batch waits for a writer that commits within the lock wait, then returns nothing; composite keys and tables without a key', async (t) => {
  const { sequelize, schema, connect } = await setup();
  const reader = await connect();
  const writer = await connect();
  try {
    await ask(writer, 'BEGIN');
    await ask(writer, 'UPDATE visibility_rows SET n = n + 1 WHERE id = 7');
    await ask(writer, "UPDATE visibility_pairs SET n = n + 1 WHERE a = 3 AND b = 'k3'");
    const started = Date.now();
    const committing = new Promise<void>((resolve) => setTimeout(() => { void ask(writer, 'COMMIT').then(() => resolve()); }, 300));
    const late = await untilAllCommitted(reader, [
      { schema, table: 'visibility_rows', key: { id: 6 } },
      { schema, table: 'visibility_rows', key: { id: 7 } },
      { schema, table: 'visibility_pairs', key: { a: 2, b: 'k2' } },
      { schema, table: 'visibility_pairs', key: { a: 3, b: 'k3' } },
      { schema, table: 'visibility_pairs', key: undefined },
    ]);
    await committing;
    t.deepEqual(late, []);
    t.true(Date.now() - started >= 250, 'the batch waited for the writer\'s commit');
    // A held composite key is found; the others of its batch are not.
    await ask(writer, 'BEGIN');
    await ask(writer, "UPDATE visibility_pairs SET n = n + 1 WHERE a = 5 AND b = 'k5'");
    const held = await untilAllCommitted(reader, [4, 5, 6].map((a) => ({ schema, table: 'visibility_pairs', key: { a, b: `k${a}` } })));
    await ask(writer, 'ROLLBACK');
    t.deepEqual(held.map((x) => x.key), [{ a: 5, b: 'k5' }]);
  } finally {
    reader.destroy();
    writer.destroy();
    await sequelize.close();
  }
});
