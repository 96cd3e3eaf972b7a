/**
 * MariaDB (row binlog) variant of stream-foreign-writer.test.ts: four plain
 * mysql2 clients update, insert and delete rows of a cached table while the
 * application reads it through the cache, with the consistency sampler at rate
 * 1.0. After quiescence (a marker write seen through the stream: it is decoded
 * after every earlier commit), every query of the catalogue, read through the
 * cache, equals the database, and the sampler finds nothing stale. Without the
 * stream the same run leaves stale values (the test can fail). The soak
 * itself: helpers/stream-soak.ts.
 */
import test from 'ava';
import { Sequelize } from 'sequelize';
import { mariadbUnavailable, startPrivateMariadb, type PrivateMariadb } from '../helpers/private-mariadb';
import { soakTests } from '../helpers/stream-soak';

const unavailable = mariadbUnavailable();
const run = unavailable === undefined ? test.serial : test.serial.skip;
if (unavailable !== undefined) test('MariaDB foreign-writer soak', (t) => { t.log(`skipped: ${unavailable}`); t.pass(); });
let server: PrivateMariadb;

test.before(async () => {
  if (unavailable !== undefined) return;
  server = await startPrivateMariadb();
  const admin = await server.client();
  await admin.query('CREATE DATABASE soak');
  await admin.end();
});

test.after.always(async () => {
  await server?.stop();
});

soakTests(run, () => ({
  sequelize: () => new Sequelize('soak', 'root', '', { host: '127.0.0.1', port: server.port, dialect: 'mysql', logging: false }),
  changeStream: () => true,
  writer: () => server.client('soak'),
  quote: (name) => `\`${name}\``,
  param: () => '?',
}));
