/**
 * The change-stream scenarios that hold on every stream database
 * (test/stream/change-stream-pg.test.ts, change-stream-mariadb.test.ts); the
 * test file gives what differs: how a foreign program writes, how the table is
 * prepared, the bounds it promises, what its commands print.
 *
 * - checkStreamFigures: stats().changeStream counts the events, reports a lag
 *   and, once measured, the bytes the server retains;
 * - makeHandoverTable, checkHandover: a standby takes over when the consumer
 *   (a second process) is killed mid-stream, and loses nothing;
 * - checkStreamedRowsTokenize: the rows the stream carries tokenize as the
 *   rows a read gives, for every column type, on random values;
 * - checkStreamCommands: `cacheops stream status`, `stats` and `stream drop`
 *   with a consumer and after it closed;
 * - checkStreamRefused: changeStreamReady rejects on a server the stream cannot use.
 */
import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import fc from 'fast-check';
import { DataTypes, type ModelAttributes, type Sequelize } from 'sequelize';
import { CacheopsStreamError, installCacheops, type ChangeStreamOptions, type InvalidatedEvent } from '../../src/index';
import { redisUrl } from './env';
import { cached, msUntil, nameOf, type StreamApp } from './stream-app';
import { checkStatsCommand, checkStatsWithoutConsumer } from './stream-stats';
import { defineItem } from './stream-models';

/** After at least `minEvents` streamed changes: the figures stats().changeStream reports (`retained`: the message of the last). */
export async function checkStreamFigures(t: ExecutionContext, app: Pick<StreamApp, 'cacheops'>, minEvents: number, retained: string): Promise<void> {
  const stats = app.cacheops.stats().changeStream;
  t.true(stats.events >= minEvents);
  t.is(typeof stats.lagMs, 'number');
  await new Promise((r) => setTimeout(r, 1100));
  t.is(typeof app.cacheops.stats().changeStream.retainedBytes, 'number', retained);
}

/** Makes `table` anew with rows 1..`rows` named v0 (`prepare` first: PostgreSQL's REPLICA IDENTITY FULL), then closes `sequelize`. */
export async function makeHandoverTable(sequelize: Sequelize, table: string, rows: number, prepare?: (sequelize: Sequelize) => Promise<unknown>): Promise<void> {
  const Item = defineItem(sequelize, table);
  await Item.sync({ force: true });
  await prepare?.(sequelize);
  await Item.bulkCreate(Array.from({ length: rows }, (_, i) => ({ name: 'v0', n: i })));
  await sequelize.close();
}

export interface HandoverOptions {
  /** The table's rows, 1..rows (makeHandoverTable). */
  readonly rows: number;
  /** A foreign program's write of name 'v1' to row `id`. */
  readonly rename: (id: number) => Promise<unknown>;
  /** How long the foreign writer writes before the consumer is killed. */
  readonly killAfterMs: number;
  /** Logs and bounds how long the take-over took, from the kill. */
  readonly tookOver: (handoverMs: number) => void;
}

/**
 * `app` a standby of `consumer` (a second process, startSecondApp): with every row's name cached, a
 * foreign writer renames the rows while the consumer is killed; `app` becomes the consumer and every
 * rename is seen by a cached read within 1 s.
 */
export async function checkHandover(t: ExecutionContext, app: StreamApp, consumer: ChildProcess, options: HandoverOptions): Promise<void> {
  t.is(app.cacheops.stats().changeStream.role, 'standby');
  for (let id = 1; id <= options.rows; id += 1) await cached(app, () => nameOf(app, id));
  // Writes go on while the consumer is killed.
  const writing = (async () => {
    for (let id = 1; id <= options.rows; id += 1) {
      await options.rename(id);
      await new Promise((r) => setTimeout(r, 4));
    }
  })();
  await new Promise((r) => setTimeout(r, options.killAfterMs));
  const killedAt = Date.now();
  consumer.kill('SIGKILL');
  await writing;
  while (app.cacheops.stats().changeStream.role !== 'consumer' && Date.now() - killedAt < 5000) await new Promise((r) => setTimeout(r, 5));
  const handoverMs = Date.now() - killedAt;
  t.is(app.cacheops.stats().changeStream.role, 'consumer');
  options.tookOver(handoverMs);
  for (let id = 1; id <= options.rows; id += 1) t.true(await msUntil(() => nameOf(app, id), 'v1') <= 1000, `row ${id}`);
}

/** The random values of the columns every database's typed table has (typedColumns), `at` from `earliestAt`. */
export function typedValues(earliestAt: string) {
  return {
    s: fc.string({ maxLength: 12 }), i: fc.integer(), big: fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }), dec: fc.integer({ min: -1e9, max: 1e9 }).map((n) => (n / 1000).toFixed(3)),
    b: fc.boolean(), at: fc.date({ min: new Date(earliestAt), max: new Date('2100-01-01'), noInvalidDate: true }), day: fc.date({ min: new Date('1900-01-01'), max: new Date('2200-01-01'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10)),
    u: fc.uuid(), blob: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)), txt: fc.string({ maxLength: 40 }), e: fc.constantFrom('x', 'y'),
  };
}

export interface TypedRowsOptions<R> {
  /** On the stream database; closed at the end. */
  readonly sequelize: Sequelize;
  /** Columns beyond the shared ones (MariaDB: DOUBLE, CHAR). */
  readonly columns?: ModelAttributes;
  /** Runs once the table is made (PostgreSQL: REPLICA IDENTITY FULL). */
  readonly prepare?: (sequelize: Sequelize) => Promise<unknown>;
  readonly prefix: string;
  /** The changeStream option. */
  readonly changeStream: true | ChangeStreamOptions;
  /** The rows a foreign program inserts (typedValues, and the extra columns'). */
  readonly rows: fc.Arbitrary<R>;
  /** A foreign program's INSERT of `row` into typed_rows; the new row's id. */
  readonly insert: (row: R) => Promise<string>;
  /** Asserts the streamed row's tokens against the read row's (`shown`: the row inserted, for messages). */
  readonly compare: (streamed: Record<string, unknown>, read: Record<string, unknown>, shown: string) => void;
}

/**
 * A table typed_rows of every tokenized type: 20 random rows inserted by a foreign program, each
 * seen in the stream (within 2 s) and compared, as tokens, with the same row read by Sequelize.
 */
export async function checkStreamedRowsTokenize<R>(t: ExecutionContext, options: TypedRowsOptions<R>): Promise<void> {
  const { sequelize } = options;
  const Typed = sequelize.define('Typed', {
    s: DataTypes.STRING, i: DataTypes.INTEGER, big: DataTypes.BIGINT, dec: DataTypes.DECIMAL(12, 3), b: DataTypes.BOOLEAN,
    at: DataTypes.DATE, day: DataTypes.DATEONLY, u: DataTypes.UUID, blob: DataTypes.BLOB, txt: DataTypes.TEXT, e: DataTypes.ENUM('x', 'y'),
    ...options.columns,
  }, { tableName: 'typed_rows', timestamps: false });
  await Typed.sync({ force: true });
  await options.prepare?.(sequelize);
  const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix: options.prefix, profiles: { Typed: { ops: 'all' } }, changeStream: options.changeStream, logger: () => undefined });
  const events: InvalidatedEvent[] = [];
  cacheops.on('invalidated', (e) => { if (e.table === 'typed_rows' && e.values !== 'all') events.push(e); });
  await cacheops.changeStreamReady();
  try {
    for (const r of fc.sample(options.rows, 20)) {
      const id = await options.insert(r);
      const deadline = Date.now() + 2000;
      let event: InvalidatedEvent | undefined;
      while (!(event = events.find((e) => (e.values as Record<string, unknown>[]).some((v) => String(v['id']) === id))) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
      t.truthy(event, `insert ${id} arrived`);
      const streamed = (event!.values as Record<string, unknown>[]).find((v) => String(v['id']) === id)!;
      const read = (await Typed.findByPk(id, { cacheops: false } as never))!.get({ plain: true }) as Record<string, unknown>;
      const tokens = (row: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(cacheops.core.rowsOf(Typed, [row])[0]!);
      options.compare(tokens(streamed), tokens(read), JSON.stringify(r, (_, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)));
    }
  } finally {
    await cacheops.invalidateAll();
    await cacheops.close();
    await sequelize.close();
  }
}

export type Cli = (...args: string[]) => Promise<{ code: number; out: string; err: string }>;

export interface StreamCommandsOptions<S> {
  /** The application the commands load, under test/fixtures/. */
  readonly fixture: string;
  /** What the fixture reads from the environment (where the server is, the prefix, the slot). */
  readonly env: Record<string, string>;
  /** Checks `stream status --json` while `app` consumes. */
  readonly status: (json: S) => void;
  /** How the server names the consumer (checkStatsCommand). */
  readonly consumer: RegExp;
  /** A write by another program on `app`'s table. */
  readonly foreignWrite: () => Promise<void>;
  /** Closes `app`, the consumer. */
  readonly closeConsumer: () => Promise<void>;
  /** What `stream drop` prints once nothing consumes. */
  readonly dropped: RegExp;
  /** What `stream status` prints after the drop. */
  readonly statusAfterDrop: RegExp;
}

/**
 * The stream commands on `app`'s stream, loading `fixture` as the application: `stream status` and
 * `stats` with `app` consuming, `stream drop` refused while it does, then, `app` closed, `stats`
 * without a consumer, `stream drop` and `stream status`. Returns the command line and the fixture's
 * path, for more checks.
 */
export async function checkStreamCommands<S>(
  t: ExecutionContext, app: Pick<StreamApp, 'cacheops' | 'prefix'>, dialect: 'postgres' | 'mysql', options: StreamCommandsOptions<S>,
): Promise<{ readonly cli: Cli; readonly fixture: string }> {
  const { main } = await import('../../src/cli/main');
  const fixture = join(__dirname, '..', 'fixtures', options.fixture);
  const cli: Cli = async (...args) => {
    let out = '';
    let err = '';
    const env = { ...process.env, ...options.env };
    Object.assign(process.env, env);
    delete require.cache[require.resolve(fixture)]; // the CLI closes the application it loaded: a fresh one each time
    const code = await main(args, { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env, cwd: process.cwd() });
    return { code, out, err };
  };
  const status = await cli('stream', 'status', '--app', fixture, '--json');
  t.is(status.code, 0, status.err);
  options.status(JSON.parse(status.out) as S);
  await checkStatsCommand(t, cli, fixture, app.cacheops, {
    prefix: app.prefix, redis: redisUrl, dialect, consumer: options.consumer, foreignWrite: options.foreignWrite,
  });
  const refused = await cli('stream', 'drop', '--app', fixture);
  t.is(refused.code, 1);
  t.regex(refused.err, /has a consumer/);
  await options.closeConsumer();
  await checkStatsWithoutConsumer(t, cli, fixture);
  const dropped = await cli('stream', 'drop', '--app', fixture);
  t.is(dropped.code, 0, dropped.err);
  t.regex(dropped.out, options.dropped);
  t.regex((await cli('stream', 'status', '--app', fixture)).out, options.statusAfterDrop);
  return { cli, fixture };
}

/**
 * Cacheops with the stream on `sequelize` (a model on `table` defined), on a server or with a user the
 * stream cannot use: changeStreamReady rejects with `message`, and the stream is off. Closes `sequelize`.
 */
export async function checkStreamRefused(t: ExecutionContext, sequelize: Sequelize, table: string, prefix: string, message: RegExp): Promise<void> {
  defineItem(sequelize, table);
  const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix, changeStream: true, logger: () => undefined });
  try {
    const error = await t.throwsAsync(cacheops.changeStreamReady(), { instanceOf: CacheopsStreamError });
    t.regex(error!.message, message);
    t.is(cacheops.stats().changeStream.role, 'off');
  } finally {
    await cacheops.close();
    await sequelize.close();
  }
}
