/**
 * Test environment: a Redis (REDIS_URL, set by scripts/with-redis.mjs), and
 * the databases to run against (TEST_DIALECTS, default sqlite). Each test file
 * gets its own key prefix and its own PostgreSQL/MariaDB database, so files
 * run in parallel without sharing anything.
 */
import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import IORedis from 'ioredis';
import { Sequelize, type Options } from 'sequelize';
import { inAvaWorker, removeKeysAfterFile } from './keys-cleanup';
import { guardPgOverlaps } from './pg-serial';

export type Dialect = 'sqlite' | 'postgres' | 'mysql';

export const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** The dialects to test: TEST_DIALECTS=sqlite,postgres,mysql (default: sqlite). */
export function dialects(): Dialect[] {
  const raw = (process.env['TEST_DIALECTS'] ?? 'sqlite').split(',').map((d) => d.trim()).filter(Boolean);
  return raw.map((d) => (d === 'mariadb' ? 'mysql' : d)) as Dialect[];
}

/**
 * Every key prefix of a test file starts with `t-<run tag>-<file tag>-`: the
 * run tag (TEST_RUN_TAG, set by scripts/test-run.mjs) lets a run check on a
 * shared Redis that it left nothing behind; the file tag lets the file remove
 * its own keys when it ends (keys-cleanup.ts). Processes a test file starts
 * inherit both through the environment.
 */
const tagPart = (text: string): string => text.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 16);
export const runTag = tagPart(process.env['TEST_RUN_TAG'] ?? '') || 'dev';
process.env['TEST_FILE_TAG'] ??= randomBytes(3).toString('hex');
export const filePrefixStart = `t-${runTag}-${tagPart(process.env['TEST_FILE_TAG'])}-`;
if (inAvaWorker()) removeKeysAfterFile(redisUrl, filePrefixStart);
guardPgOverlaps();

/** A unique key prefix for one test (no braces, ends with ':'). */
export function uniquePrefix(label: string): string {
  return `${filePrefixStart}${label.replace(/[^a-z0-9]/gi, '').slice(0, 20)}-${randomBytes(4).toString('hex')}:`;
}

/**
 * The database of a test file. TEST_DB_RUN (set by .ci/run) adds a run id, so
 * two runs on one machine (say a check and a development run) never share tables.
 */
function dbName(file: string): string {
  const run = (process.env['TEST_DB_RUN'] ?? '').replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 12);
  const base = basename(file).replace(/\.test\.ts$/, '').replace(/[^a-z0-9]/gi, '_').toLowerCase();
  return `co_${run ? `${run}_` : ''}${base}`.slice(0, 60);
}

const created = new Set<string>();

async function ensureDatabase(dialect: Dialect, name: string): Promise<void> {
  const key = `${dialect}:${name}`;
  if (created.has(key)) return;
  if (dialect === 'postgres') {
    const admin = new Sequelize('postgres', 'postgres', '', { host: '127.0.0.1', port: 5432, dialect: 'postgres', logging: false });
    const [rows] = await admin.query(`SELECT 1 FROM pg_database WHERE datname = '${name}'`);
    if ((rows as unknown[]).length === 0) {
      try { await admin.query(`CREATE DATABASE "${name}"`); } catch { /* created by a parallel worker */ }
    }
    await admin.close();
  } else if (dialect === 'mysql') {
    const admin = new Sequelize('', 'root', '', { host: '127.0.0.1', port: 3306, dialect: 'mysql', logging: false });
    await admin.query(`CREATE DATABASE IF NOT EXISTS \`${name}\``);
    await admin.close();
  }
  created.add(key);
}

/**
 * A Sequelize for a dialect, on a database of this test file's own
 * (SQLite: in memory). `file` is the test's `__filename`.
 */
export async function makeSequelize(dialect: Dialect, file: string, extra: Options = {}): Promise<Sequelize> {
  const name = dbName(file);
  if (dialect === 'sqlite') return new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false, ...extra });
  await ensureDatabase(dialect, name);
  if (dialect === 'postgres') {
    return new Sequelize(name, 'postgres', '', { host: '127.0.0.1', port: 5432, dialect: 'postgres', logging: false, ...extra });
  }
  return new Sequelize(name, 'root', '', { host: '127.0.0.1', port: 3306, dialect: 'mysql', logging: false, ...extra });
}

/** A plain ioredis client on the test Redis (close it). */
export function rawRedis(): IORedis {
  return new IORedis(redisUrl);
}

/** Counts the SQL statements a function runs (through Sequelize's logging option). */
export async function countSql<T>(sequelize: Sequelize, fn: () => Promise<T>): Promise<{ result: T; sql: string[] }> {
  const seen: string[] = [];
  const opts = (sequelize as unknown as { options: { logging?: unknown } }).options;
  const previous = opts.logging;
  opts.logging = (sql: string) => { seen.push(sql); };
  try {
    return { result: await fn(), sql: seen };
  } finally {
    opts.logging = previous;
  }
}
