/**
 * The `changeStream` option: what a user may say, and its checked form.
 */
import { CacheopsConfigError } from './errors';

/** Connection settings of the `pg` client the PostgreSQL consumer opens (a URL or `pg` ClientConfig fields). */
export type StreamConnection = string | Readonly<Record<string, unknown>>;

/**
 * Opt-in invalidation by the database's own change stream (see docs/change-stream.md).
 *
 * @example
 * installCacheops(sequelize, { redis, profiles, changeStream: { slot: 'cacheops_app', lagWarningMs: 2000 } });
 */
export interface ChangeStreamOptions {
  /** PostgreSQL: the logical replication slot (default `cacheops_<database>`). */
  readonly slot?: string;
  /** PostgreSQL: the publication the slot decodes (default `cacheops`). */
  readonly publication?: string;
  /** PostgreSQL: create the publication and slot when missing (default true; needs the rights to). */
  readonly createSlot?: boolean;
  /** PostgreSQL: where the consumer connects (default: Sequelize's host, port, user, password and database). */
  readonly connection?: StreamConnection;
  /** MariaDB/MySQL: the server id the consumer announces as a replica (default: derived from the database name; unique among the server's replicas). */
  readonly serverId?: number;
  /** SQLite: milliseconds between two reads of `PRAGMA data_version` (default 100). PostgreSQL and MariaDB/MySQL push their changes and ignore it. */
  readonly pollIntervalMs?: number;
  /** Milliseconds between a standby process's checks whether the consumer is gone (default 1000): the handover bound. */
  readonly handoverMs?: number;
  /** A warning is logged when the lag from commit to invalidation passes this (default 5000). */
  readonly lagWarningMs?: number;
  /** A warning is logged when the WAL the slot retains passes this many bytes (default 1 GiB). */
  readonly retainedWarningBytes?: number;
  /**
   * Wait until a decoded transaction is visible to new snapshots before invalidating (default true).
   * Only for demonstrating the commit-visibility race in tests: never turn it off in an application.
   */
  readonly awaitVisibility?: boolean;
  /**
   * `writes: 'stream'`: how long a write waits for the stream to invalidate its transaction
   * before it invalidates its tables model-wide itself (default 1000 ms).
   */
  readonly writeWaitMs?: number;
}

export interface NormalizedStreamOptions {
  readonly slot: string | undefined;
  readonly publication: string;
  readonly createSlot: boolean;
  readonly connection: StreamConnection | undefined;
  readonly pollIntervalMs: number | undefined;
  readonly serverId: number | undefined;
  readonly handoverMs: number;
  readonly lagWarningMs: number;
  readonly retainedWarningBytes: number;
  readonly awaitVisibility: boolean;
  readonly writeWaitMs: number;
}

const KEYS = ['slot', 'publication', 'createSlot', 'connection', 'serverId', 'pollIntervalMs', 'handoverMs', 'lagWarningMs', 'retainedWarningBytes', 'awaitVisibility', 'writeWaitMs'];
const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function name(value: unknown, key: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new CacheopsConfigError(key, 'expected a lower-case identifier of letters, digits and _ (at most 63)');
  }
  return value;
}

function positive(value: unknown, key: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new CacheopsConfigError(key, 'expected a positive number');
  }
  return value;
}

function bool(value: unknown, key: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new CacheopsConfigError(key, 'expected true or false');
  return value;
}

function serverId(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 2 ** 32 - 1) {
    throw new CacheopsConfigError('changeStream.serverId', 'expected an integer from 1 to 4294967295');
  }
  return value;
}

/** Checks `changeStream`; undefined when it is off. */
export function normalizeStreamOptions(value: unknown): NormalizedStreamOptions | undefined {
  if (value === undefined || value === false) return undefined;
  const given: Record<string, unknown> = value === true ? {} : value as Record<string, unknown>;
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new CacheopsConfigError('changeStream', 'expected true, false or an object of options');
  }
  for (const k of Object.keys(given)) {
    if (!KEYS.includes(k)) throw new CacheopsConfigError(`changeStream.${k}`, `unknown option (known: ${KEYS.join(', ')})`);
  }
  const connection = given['connection'];
  if (connection !== undefined && typeof connection !== 'string' && (typeof connection !== 'object' || connection === null)) {
    throw new CacheopsConfigError('changeStream.connection', 'expected a connection URL or an object of client options (pg or mysql2)');
  }
  return {
    slot: name(given['slot'], 'changeStream.slot'),
    publication: name(given['publication'], 'changeStream.publication') ?? 'cacheops',
    createSlot: bool(given['createSlot'], 'changeStream.createSlot', true),
    connection: connection as StreamConnection | undefined,
    pollIntervalMs: positive(given['pollIntervalMs'], 'changeStream.pollIntervalMs'),
    serverId: serverId(given['serverId']),
    handoverMs: positive(given['handoverMs'], 'changeStream.handoverMs') ?? 1000,
    lagWarningMs: positive(given['lagWarningMs'], 'changeStream.lagWarningMs') ?? 5000,
    retainedWarningBytes: positive(given['retainedWarningBytes'], 'changeStream.retainedWarningBytes') ?? 2 ** 30,
    awaitVisibility: bool(given['awaitVisibility'], 'changeStream.awaitVisibility', true),
    writeWaitMs: positive(given['writeWaitMs'], 'changeStream.writeWaitMs') ?? 1000,
  };
}

/** Throws at install, before anything is connected, when the dialect has no change stream. */
export function checkStreamDialect(dialect: string, options: unknown): void {
  if (options !== undefined && !['sqlite', 'postgres', 'mysql', 'mariadb'].includes(dialect)) {
    throw new CacheopsConfigError('changeStream', `not available on ${dialect} (PostgreSQL, MariaDB/MySQL and SQLite have it)`);
  }
}
