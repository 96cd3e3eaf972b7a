/**
 * `cacheops stats` on an application with a change stream: the server's view
 * (who consumes, retained bytes) and the consumer's figures once it flushed
 * them. Shared by the PostgreSQL and MariaDB stream tests.
 */
import type { ExecutionContext } from 'ava';
import type { Cacheops } from '../../src/index';
import type { StreamReport, StreamServerView } from '../../src/cli/stats';

type Cli = (...args: string[]) => Promise<{ code: number; out: string; err: string }>;

export async function checkStatsCommand(t: ExecutionContext, cli: Cli, fixture: string, app: Cacheops, opts: {
  dialect: string;
  /** How the server names the consumer (PostgreSQL: a server process id; MariaDB: the lease token). */
  consumer: RegExp;
  /** A write by another program on a covered table. */
  foreignWrite: () => Promise<void>;
  /** The application's key prefix and Redis: `stats --redis --prefix` shows the flushed figures alone. */
  prefix: string;
  redis: string;
}): Promise<void> {
  const report = async (): Promise<StreamReport> => {
    const run = await cli('stats', '--app', fixture, '--json');
    t.is(run.code, 0, run.err);
    return (JSON.parse(run.out) as { changeStream: StreamReport }).changeStream;
  };
  const first = await report();
  t.is(first.flushed, null, 'nothing flushed yet');
  t.regex((first.now as StreamServerView).consumer ?? '', opts.consumer, 'the consumer is found on the server');
  t.regex((await cli('stats', '--app', fixture)).out, /consumer figures: none flushed yet/);

  const events = app.stats().changeStream.events;
  await opts.foreignWrite();
  const deadline = Date.now() + 5000;
  while (app.stats().changeStream.events === events && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await app.flushStats();
  const mine = app.stats().changeStream;
  const second = await report();
  const now = second.now as StreamServerView;
  t.is(now.dialect, opts.dialect);
  t.regex(now.consumer ?? '', opts.consumer);
  t.is(typeof now.retainedBytes, 'number', 'retained bytes, from the server');
  t.truthy(second.flushed);
  t.is(second.flushed!.role, 'consumer');
  t.is(second.flushed!.pid, process.pid);
  t.true(second.flushed!.events > events, 'the foreign write is counted');
  t.is(second.flushed!.events, mine.events);
  t.is(second.flushed!.resets, mine.resets);
  t.is(typeof second.flushed!.lagMs, 'number');
  t.true(second.flushed!.at <= Date.now() && second.flushed!.at > Date.now() - 60_000);
  const byRedis = await cli('stats', '--redis', opts.redis, '--prefix', opts.prefix, '--json');
  t.is(byRedis.code, 0, byRedis.err);
  const flushedOnly = (JSON.parse(byRedis.out) as { changeStream: StreamReport }).changeStream;
  t.is(flushedOnly.now, undefined, 'without the application, the server is not asked');
  t.deepEqual(flushedOnly.flushed, second.flushed);
  const text = (await cli('stats', '--app', fixture)).out;
  t.log(text.split('\n').filter((l) => /change stream|flushed by the consumer/i.test(l)).join('\n'));
  t.regex(text, new RegExp(`Change stream \\(${opts.dialect}\\): consumed \\(.+\\), the server keeps .* bytes\\) for it`));
  t.regex(text, new RegExp(`flushed by the consumer \\(pid ${process.pid} on .+, \\d+ s ago\\): role consumer, lag \\d+ ms, retained (\\d+ bytes|-), ${mine.events} events, ${mine.resets} resets`));
}

/** After the consumer closed: the server shows no consumer. */
export async function checkStatsWithoutConsumer(t: ExecutionContext, cli: Cli, fixture: string): Promise<void> {
  const run = await cli('stats', '--app', fixture);
  t.is(run.code, 0, run.err);
  t.regex(run.out, /Change stream \(\w+\): off: no process consumes it/);
}
