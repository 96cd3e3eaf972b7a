#!/usr/bin/env node
/**
 * The `cacheops` command line: invalidation, conj set reaping, file cache
 * cleaning and statistics for an application using sequelize-cacheops.
 *
 * Everything runs through `main(argv, io)`, which returns the exit code, so it
 * can be used (and tested) without a process of its own.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Model, ModelStatic } from 'sequelize';
import { loadApp, UsageError } from './app';
import { progress, type ProgressState } from './progress';
import { ensureReachable, isRedisClientError } from './redis';
import { collectStats, renderStats, type StreamServerView } from './stats';
import { CacheopsError } from '../core/errors';
import { closest, unknownName } from '../core/suggest';
import { defaultFileCacheDir, FileCache } from '../features/file-cache';
import type { Cacheops } from '../install';
import { allKeysPattern, prefixRegistryKey } from '../core/keys';
import { tableOf } from '../core/tables';
import { reapConjs, type ReapProgress } from '../ops/reap';
import { connectRedis, endpointOf, isCluster, type RedisClient, type ScriptCommands } from '../core/redis';
import { checkPermissions, type Features } from '../core/permissions';
import { withoutChangeStreams } from '../stream/change-stream';
import { binlogStreamStatus, forgetBinlogPosition, renderBinlogStatus } from '../stream/mariadb-admin';
import { dropStreamSlot, renderStreamStatus, streamStatus } from '../stream/pg-admin';

export interface CliIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown; readonly isTTY?: boolean };
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
}

export const USAGE = `Usage: cacheops <command> [options]

Commands:
  invalidate <Model.pk | Model | all>  drop what one row could affect, every cached value of a
                                       model, or everything of the installation (needs --app)
  reap-conjs                           remove dead entries from conj and index sets (needs --app or --redis)
  clean-file-cache [dir]               remove expired FileCache entries
                                       (default dir: $CACHEOPS_FILE_CACHE_DIR, else ./.cache/cacheops)
  stats                                keys by kind and by prefix, Redis memory and hit counts, the
                                       change stream (consumer, retained bytes; lag and events as
                                       the consumer last flushed them) (needs --app or --redis)
  stream status                        the change stream's server side: wal_level, publication,
                                       slot (retained WAL), consumer, replica identities; MariaDB/MySQL:
                                       binlog settings, acknowledged position, lease holder (needs --app)
  stream drop                          drop the change stream's replication slot; MariaDB/MySQL: forget
                                       the acknowledged position (needs --app; refused while a consumer runs)

Options:
  --app <module>             the application: its default or \`sequelize\` export is a Sequelize
                             with cacheops installed
  --redis <url>              reap-conjs, stats: use this Redis instead of loading an app
  --prefix <prefix>          with --redis: only this key prefix (default: every prefix;
                             stats lists the prefixes it finds and their counts)
  --chunk-size <n>           reap-conjs: keys per SCAN step and members per check (default 1000)
  --min-conj-set-size <n>    reap-conjs: skip conj sets with fewer members (default 1000)
  --json                     stats: print JSON
  -h, --help                 show this help

Progress goes to stderr: a bar on a terminal, else a line a second.
Exit codes: 0 done, 1 failed (Redis unreachable, ...), 2 bad arguments.
Set CACHEOPS_DEBUG=1 to print the stack of an unexpected error.
`;

const OPTIONS = {
  app: { type: 'string' },
  redis: { type: 'string' },
  prefix: { type: 'string' },
  'chunk-size': { type: 'string' },
  'min-conj-set-size': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = keyof typeof OPTIONS;
type Values = { [K in OptionName]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean };

/** Per command: the options it takes and how many positionals (min, max). */
const COMMANDS: Readonly<Record<string, { options: readonly OptionName[]; args: [number, number] }>> = {
  invalidate: { options: ['app'], args: [1, 1] },
  'reap-conjs': { options: ['app', 'redis', 'prefix', 'chunk-size', 'min-conj-set-size'], args: [0, 0] },
  'clean-file-cache': { options: [], args: [0, 1] },
  stats: { options: ['app', 'redis', 'prefix', 'json'], args: [0, 0] },
  stream: { options: ['app', 'json'], args: [1, 1] },
};

function integer(values: Values, name: 'chunk-size' | 'min-conj-set-size', fallback: number, min: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new UsageError(`--${name} expects an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** The Redis connection and key prefix a command works on: the app's, or --redis/--prefix. */
interface Target {
  readonly client: RedisClient & ScriptCommands;
  /** undefined: every prefix (--redis without --prefix, or an app whose prefix is a function). */
  readonly prefix: string | undefined;
  /** stats: the prefixes to report; undefined: every one found. */
  readonly selected: readonly string[] | undefined;
  /** stats: where the flushed counters are, when not under the selected prefixes. */
  readonly flushedFrom: string | undefined;
  readonly insideout: boolean;
}

interface Session {
  app?: Cacheops;
  ownClient?: RedisClient;
}

async function target(values: Values, io: CliIo, session: Session, command: string): Promise<Target> {
  if (values.app !== undefined && values.redis !== undefined) throw new UsageError('give --app or --redis, not both');
  if (values.prefix !== undefined && values.redis === undefined) throw new UsageError('--prefix goes with --redis (with --app the prefix is the application\'s)');
  if (values.redis !== undefined) {
    if (/[{}]/.test(values.prefix ?? '')) throw new UsageError('--prefix must not contain { or }');
    let client: RedisClient & ScriptCommands;
    try {
      ({ client } = connectRedis(values.redis, { maxRetriesPerRequest: 1, retryStrategy: (n: number) => (n > 3 ? null : 200) }));
    } catch (error) {
      throw new UsageError(`--redis: ${(error as Error).message}`);
    }
    client.on('error', () => undefined); // ensureReachable and failing commands report it
    session.ownClient = client;
    await ensureReachable(client);
    const prefix = values.prefix;
    await ensurePermitted(client, { prefix: prefix ?? '', prefixFunction: prefix === undefined, cli: true, cluster: isCluster(client) });
    return { client, prefix, selected: prefix === undefined ? undefined : [prefix], flushedFrom: undefined, insideout: false };
  }
  const app = await requireApp(values, io, session, command);
  const client = app.core.redis as RedisClient & ScriptCommands;
  const p = app.core.config.prefix;
  await ensurePermitted(client, { prefix: typeof p === 'string' ? p : '', prefixFunction: typeof p !== 'string', cli: true, cluster: isCluster(client) });
  if (typeof p === 'string') return { client, prefix: p, selected: [p], flushedFrom: undefined, insideout: app.core.config.insideout };
  // A prefix function registers every prefix it returns; its flushed counters are under ''.
  const registered = (await client.smembers(prefixRegistryKey)).sort();
  return { client, prefix: undefined, selected: registered, flushedFrom: '', insideout: app.core.config.insideout };
}

async function requireApp(values: Values, io: CliIo, session: Session, command: string): Promise<Cacheops> {
  if (values.app === undefined) {
    throw new UsageError(`${command} needs the application: --app path/to/module${command === 'invalidate' ? '' : ' (or --redis <url>)'}`);
  }
  // Loaded to act on its cache, not to consume its change stream.
  session.app = await withoutChangeStreams(() => loadApp(values.app!, io.cwd));
  await ensureReachable(session.app.core.redis);
  await session.app.ready();
  return session.app;
}

/** Fails with one CacheopsPermissionError line when the Redis user may not run what the command sends. */
async function ensurePermitted(client: RedisClient, features: Features): Promise<void> {
  const result = await checkPermissions(client, features, endpointOf(client));
  if (result.kind === 'missing') throw result.error;
}

const patternOf = (prefix: string | undefined): string => (prefix === undefined ? '*cacheops:{*' : allKeysPattern(prefix));
const describePrefix = (prefix: string | undefined): string => (prefix === undefined ? 'every prefix' : `prefix ${JSON.stringify(prefix)}`);

/** `Model.pk`, `Model` or `all`, checked before the application is loaded. */
function parseTarget(spec: string): { name: string; pk: string | undefined } | 'all' {
  if (spec === 'all') return 'all';
  const dot = spec.indexOf('.');
  const name = dot < 0 ? spec : spec.slice(0, dot);
  const pk = dot < 0 ? undefined : spec.slice(dot + 1);
  if (name === '' || pk === '') throw new UsageError(`bad target ${JSON.stringify(spec)}: expected Model.pk, Model or all`);
  return { name, pk };
}

async function invalidate(target: ReturnType<typeof parseTarget>, cacheops: Cacheops, io: CliIo): Promise<void> {
  if (target === 'all') {
    await cacheops.invalidateAll();
    const p = cacheops.core.config.prefix;
    io.stdout.write(`invalidated everything cached under ${typeof p === 'string' ? `prefix ${JSON.stringify(p)}` : 'the installation'}\n`);
    return;
  }
  const { name, pk } = target;
  const models = cacheops.sequelize.models as Record<string, ModelStatic<Model>>;
  const model = models[name];
  if (!model) {
    const known = Object.keys(models).sort();
    throw new UsageError(known.length ? unknownName(`model ${JSON.stringify(name)}`, name, known) : `unknown model ${JSON.stringify(name)} (the application defines none)`);
  }
  if (pk === undefined) {
    await cacheops.invalidateModel(model);
    io.stdout.write(`invalidated every cached value depending on ${name} (table ${tableOf(model)})\n`);
    return;
  }
  const keys = model.primaryKeyAttributes;
  if (keys.length !== 1) throw new UsageError(`${name} has ${keys.length === 0 ? 'no' : 'a composite'} primary key: use "invalidate ${name}"`);
  const key = keys[0]!;
  const type = (model.getAttributes()[key]?.type as { key?: string } | undefined)?.key ?? '';
  if (['INTEGER', 'BIGINT', 'SMALLINT', 'TINYINT', 'MEDIUMINT'].includes(type) && !/^-?\d+$/.test(pk)) {
    throw new UsageError(`bad primary key ${JSON.stringify(pk)} for ${name}.${key} (an integer)`);
  }
  const row = await model.findByPk(pk, { paranoid: false, logging: false, cacheops: false } as never);
  if (row) {
    await cacheops.invalidateObj(row);
    io.stdout.write(`invalidated what ${name} ${key}=${pk} could affect (by its current values)\n`);
  } else {
    await cacheops.invalidateDict(model, { [key]: pk });
    io.stdout.write(`${name} ${key}=${pk} is not in the database: invalidated by its primary key alone\n`);
  }
}

async function reap(chunkSize: number, minConjSetSize: number, t: Target, io: CliIo): Promise<void> {
  if (t.insideout) {
    io.stdout.write('reap-conjs: nothing to reap in insideout mode (conj keys are stamps that expire on their own)\n');
    return;
  }
  const bar = progress(io.stderr, { label: 'reap-conjs', unit: 'keys' });
  const state = (p: ReapProgress): ProgressState => ({ done: p.visitedKeys, total: p.totalKeys, detail: `${p.deadMembers} dead members removed` });
  let last: ProgressState = { done: 0, total: 0 };
  const r = await reapConjs(t.client, patternOf(t.prefix), {
    chunkSize, minConjSetSize, onProgress: (p) => { last = state(p); bar.update(last); },
  });
  bar.finish(last);
  io.stdout.write(`reap-conjs (${describePrefix(t.prefix)}): checked ${r.checkedConjSets} of ${r.conjSets} conj sets `
    + `(skipped those under ${minConjSetSize} members), removed ${r.deadMembers} dead members, `
    + `${r.emptiedConjSets} emptied conj sets; checked ${r.indexSets} index sets, removed ${r.staleIndexEntries} stale index entries\n`);
}

/** The application's change stream as its database server shows it (PostgreSQL, MariaDB/MySQL). */
function streamServer(app: Cacheops | undefined): (() => Promise<StreamServerView>) | undefined {
  const core = app?.core;
  if (!core?.config.changeStream) return undefined;
  if (core.dialect === 'postgres') {
    return async () => {
      const server = await streamStatus(core);
      return { dialect: core.dialect, consumer: server.consumerPid === null || server.consumerPid === undefined ? null : String(server.consumerPid), retainedBytes: server.slot?.retainedBytes ?? null, server };
    };
  }
  if (core.dialect === 'mysql' || core.dialect === 'mariadb') {
    return async () => {
      const server = await binlogStreamStatus(core);
      return { dialect: core.dialect, consumer: server.consumer, retainedBytes: server.retainedBytes, server };
    };
  }
  return undefined;
}

async function stats(values: Values, t: Target, io: CliIo, app: Cacheops | undefined): Promise<void> {
  const look = streamServer(app);
  const report = await collectStats({
    client: t.client, selected: t.selected, ...(t.flushedFrom !== undefined ? { flushedFrom: t.flushedFrom } : {}),
    ...(look ? { streamServer: look } : {}), streamOn: app?.core.config.changeStream !== undefined,
  }, io.stderr);
  if (values.json) {
    io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const describe = t.selected === undefined ? 'every prefix found'
    : t.selected.length === 1 ? `prefix ${JSON.stringify(t.selected[0])}`
      : `the ${t.selected.length} prefixes the application's prefix function registered`;
  io.stdout.write(renderStats(report, describe));
}

async function run(argv: readonly string[], io: CliIo, session: Session): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    // Node's message names the option (`Unknown option '--prefx'. To specify...`): one line with the closest one instead.
    const flag = /^Unknown option '--([^']+)'/.exec((error as Error).message)?.[1];
    if (flag === undefined) throw new UsageError((error as Error).message);
    const match = closest(flag, Object.keys(OPTIONS));
    throw new UsageError(`unknown option --${flag}${match === undefined ? '' : `: did you mean --${match}?`}`);
  }
  const values = parsed.values as Values;
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  const [command, ...args] = parsed.positionals;
  if (command === undefined) throw new UsageError('no command given');
  const spec = COMMANDS[command];
  if (!spec) throw new UsageError(unknownName(`command ${JSON.stringify(command)}`, command, Object.keys(COMMANDS), 'commands'));
  for (const name of Object.keys(values) as OptionName[]) {
    if (values[name] !== undefined && !spec.options.includes(name)) throw new UsageError(`--${name} does not apply to ${command}`);
  }
  if (args.length < spec.args[0]) throw new UsageError(`${command} needs ${command === 'invalidate' ? 'a target: Model.pk, Model or all' : command === 'stream' ? 'status or drop' : 'an argument'}`);
  if (args.length > spec.args[1]) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(args[spec.args[1]])}`);

  if (command === 'stream') {
    const sub = args[0]!;
    if (sub !== 'status' && sub !== 'drop') throw new UsageError(`stream: expected status or drop, got ${JSON.stringify(sub)}`);
    const app = await requireApp(values, io, session, 'stream');
    const binlog = app.core.dialect === 'mysql' || app.core.dialect === 'mariadb';
    if (sub === 'status' && binlog) {
      const status = await binlogStreamStatus(app.core);
      io.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : renderBinlogStatus(status));
    } else if (sub === 'status') {
      const status = await streamStatus(app.core);
      io.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : renderStreamStatus(status));
    } else if (binlog) {
      const forgotten = await forgetBinlogPosition(app.core);
      io.stdout.write(forgotten ? 'forgot the acknowledged binlog position (the next consumer invalidates everything once)\n' : 'no binlog position was stored\n');
    } else {
      const { slot, dropped } = await dropStreamSlot(app.core);
      io.stdout.write(dropped ? `dropped replication slot ${slot}\n` : `replication slot ${slot} does not exist\n`);
    }
  } else if (command === 'invalidate') {
    const parsedTarget = parseTarget(args[0]!);
    await invalidate(parsedTarget, await requireApp(values, io, session, command), io);
  } else if (command === 'clean-file-cache') {
    const dir = args[0] ?? defaultFileCacheDir(io.env);
    const path = resolve(io.cwd, dir);
    if (!existsSync(path)) {
      io.stdout.write(`clean-file-cache: ${dir} does not exist, nothing to clean\n`);
      return 0;
    }
    const removed = await new FileCache(path).clean();
    io.stdout.write(`clean-file-cache: removed ${removed} expired ${removed === 1 ? 'entry' : 'entries'} from ${dir}\n`);
  } else if (command === 'reap-conjs') {
    const chunkSize = integer(values, 'chunk-size', 1000, 1);
    const minConjSetSize = integer(values, 'min-conj-set-size', 1000, 0);
    await reap(chunkSize, minConjSetSize, await target(values, io, session, command), io);
  } else {
    const t = await target(values, io, session, command);
    await stats(values, t, io, session.app);
  }
  return 0;
}

/**
 * Runs the CLI: `argv` without the node and script paths. Resolves to the
 * exit code (0 done, 1 failed, 2 bad arguments); never throws.
 *
 * @example
 * process.exitCode = await main(['invalidate', 'Post.34', '--app', './app.js'], { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() });
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const session: Session = {};
  let code: number;
  try {
    code = await run(argv, io, session);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`cacheops: ${error.message}\nRun "cacheops --help" for usage.\n`);
      code = 2;
    } else {
      // One line for what we and the Redis client raise; other errors (the app's, the database's,
      // a bug) print their message, and their stack with CACHEOPS_DEBUG.
      const ours = error instanceof CacheopsError || isRedisClientError(error);
      const message = (error as Error | undefined)?.message ?? String(error);
      const debug = !ours && io.env['CACHEOPS_DEBUG'] !== undefined;
      io.stderr.write(`cacheops: ${debug ? (error as Error).stack ?? message : ours ? message.split('\n')[0] : message}\n`);
      code = 1;
    }
  }
  // The CLI loaded the application: it closes what the application opened.
  await session.app?.close().catch(() => undefined);
  await session.app?.sequelize.close().catch(() => undefined);
  if (session.ownClient) session.ownClient.disconnect();
  return code;
}

if (require.main === module) {
  void main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() })
    .then((code) => {
      // The application may keep other handles open (pools, timers): the command is done.
      process.stdout.write('', () => process.exit(code));
    });
}
