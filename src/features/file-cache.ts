/**
 * A cache on disk with the API of `cacheops.cache` plus `cached()`: for
 * values too big or too local for Redis, or for tools without a Redis.
 *
 * Layout: one file per key, named by the SHA-1 of the key, under two levels
 * of fan-out directories (`<dir>/ab/cd/abcd…`), so no directory grows large.
 * A file is a 16-byte header (magic, expiry time, body length) and the bytes
 * of the serializer (serialize.ts), the same encoding as the Redis caches.
 *
 * Concurrency: a value is written to a temporary file in the same directory
 * and renamed over the entry, an atomic replacement on POSIX file systems, so
 * a reader in any process sees either the old or the new file, never part of
 * one; the last writer wins. The body length in the header also catches a file
 * torn by a crash of the machine (it reads as a miss). Expiry is checked on
 * read; `clean()` removes expired entries in bulk (`cacheops clean-file-cache`).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sequelize } from 'sequelize';
import { DEFAULT_TIMEOUT, checkTimeout } from '../core/config';
import { CacheMiss, CacheopsConfigError, CacheopsError } from '../core/errors';
import type { CachedEntry, CachedFunction } from './functions';
import { callHash, checkFunction, checkFunctionOptions, declarationSite, functionIdentity, type FunctionCacheOptions } from './function-identity';
import { soleInstalledSequelize } from '../core/open-installations';
import { hashText } from '../core/keys';
import { stableStringify } from '../query/key';
import { decodeValue, encodeValue } from '../core/serialize';

const MAGIC = Buffer.from('COF1');
const HEADER = 16;
/** A temporary file older than this was left by a writer that died (clean() removes it). */
const STALE_TEMP_MS = 10 * 60 * 1000;
const ENTRY_NAME = /^[0-9a-f]{40}$/;
const TEMP_NAME = /^\.[0-9a-f]{40}\.\d+\.[0-9a-f]+\.tmp$/;
const FAN_NAME = /^[0-9a-f]{2}$/;

/** The default directory: `CACHEOPS_FILE_CACHE_DIR`, else `./.cache/cacheops`. */
export function defaultFileCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  return env['CACHEOPS_FILE_CACHE_DIR'] || join('.', '.cache', 'cacheops');
}

export interface FileCacheOptions {
  /** Seconds an entry lives when `set` is given no timeout (default 3600). */
  readonly timeout?: number;
  /** Rebuilds cached model instances (default: the only cacheops installation's, if any). */
  readonly sequelize?: Sequelize;
}

/** Options of `FileCache#cached`: as `cacheops.cached`, without the lock. */
export type FileCachedOptions = FunctionCacheOptions;

interface Entry {
  readonly expires: number;
  readonly body: Buffer | undefined;
  readonly ino: number;
}

const code = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;

/** Parses a header (and body when given the whole file); undefined for a file that is not a complete entry. */
function parse(bytes: Buffer, size: number): { expires: number; body: Buffer | undefined } | undefined {
  if (bytes.length < HEADER || !bytes.subarray(0, 4).equals(MAGIC)) return undefined;
  const expires = bytes.readDoubleBE(4);
  const length = bytes.readUInt32BE(12);
  if (size !== HEADER + length) return undefined;
  return { expires, body: bytes.length === size ? bytes.subarray(HEADER) : undefined };
}

/**
 * A file cache, safe with concurrent writers in several processes.
 *
 * @example
 * const files = new FileCache('./.cache/cacheops');
 * await files.set('report', data, 600);
 * await files.get('report');                 // throws CacheMiss when absent or expired
 * const slow = files.cached({ timeout: 60 })(async (n: number) => compute(n));
 */
export class FileCache {
  readonly dir: string;
  private readonly timeout: number;
  private readonly sequelize: Sequelize | undefined;

  constructor(dir: string = defaultFileCacheDir(), options: FileCacheOptions = {}) {
    if (typeof dir !== 'string' || dir === '') throw new CacheopsConfigError('dir', 'expected a non-empty directory path');
    for (const k of Object.keys(options)) {
      if (k !== 'timeout' && k !== 'sequelize') throw new CacheopsConfigError(`options.${k}`, 'unknown option (known: timeout, sequelize)');
    }
    this.dir = dir;
    this.timeout = options.timeout === undefined ? DEFAULT_TIMEOUT : checkTimeout(options.timeout, 'options.timeout');
    this.sequelize = options.sequelize;
  }

  private pathOf(name: string): { folder: string; file: string; hash: string } {
    const hash = hashText(name);
    const folder = join(this.dir, hash.slice(0, 2), hash.slice(2, 4));
    return { folder, file: join(folder, hash), hash };
  }

  private failure(action: string, path: string, error: unknown): CacheopsError {
    const why = code(error) === 'ENOTDIR' || code(error) === 'EEXIST' ? 'a part of the path is not a directory'
      : code(error) === 'EACCES' || code(error) === 'EPERM' || code(error) === 'EROFS' ? 'it is not writable'
        : (error as Error).message;
    return new CacheopsError(`file cache ${JSON.stringify(this.dir)}: cannot ${action} ${path}: ${why}`, { cause: error });
  }

  /** Reads an entry (whole, or the header only); undefined when there is none. */
  private async readEntry(file: string, headerOnly: boolean): Promise<Entry | undefined> {
    let handle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      if (code(error) === 'ENOENT') return undefined;
      throw this.failure('read', file, error);
    }
    try {
      const info = await handle.stat();
      let bytes: Buffer;
      if (headerOnly) {
        bytes = Buffer.alloc(HEADER);
        const { bytesRead } = await handle.read(bytes, 0, HEADER, 0);
        bytes = bytes.subarray(0, bytesRead);
      } else {
        bytes = await handle.readFile();
      }
      const parsed = parse(bytes, info.size);
      // An incomplete or foreign file reads as expired, so that it gets replaced or cleaned.
      return { expires: parsed?.expires ?? 0, body: parsed?.body, ino: info.ino };
    } finally {
      await handle.close();
    }
  }

  /** Removes an expired entry unless a writer replaced it meanwhile (best effort). */
  private async discard(file: string, ino: number): Promise<boolean> {
    try {
      if ((await stat(file)).ino !== ino) return false;
      await unlink(file);
      return true;
    } catch {
      return false;
    }
  }

  private async load(name: string, label: string): Promise<unknown> {
    const { file } = this.pathOf(name);
    const entry = await this.readEntry(file, false);
    if (!entry) throw new CacheMiss(label);
    if (entry.expires <= Date.now() || !entry.body) {
      await this.discard(file, entry.ino);
      throw new CacheMiss(label);
    }
    const decoded = decodeValue(entry.body, this.sequelize ?? soleInstalledSequelize());
    if (!decoded) throw new CacheMiss(label);
    return decoded.value;
  }

  private async save(name: string, value: unknown, timeout: number): Promise<void> {
    const body = encodeValue(value); // throws before anything touches the disk
    const { folder, file, hash } = this.pathOf(name);
    const header = Buffer.alloc(HEADER);
    MAGIC.copy(header, 0);
    header.writeDoubleBE(Date.now() + timeout * 1000, 4);
    header.writeUInt32BE(body.length, 12);
    const temp = join(folder, `.${hash}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    // clean() may remove an empty fan-out directory between mkdir and the write: retry.
    for (let attempt = 0; ; attempt += 1) {
      try {
        await mkdir(folder, { recursive: true });
        await writeFile(temp, Buffer.concat([header, body]), { flag: 'wx' });
        break;
      } catch (error) {
        if (code(error) !== 'ENOENT' || attempt >= 3) throw this.failure('write', temp, error);
      }
    }
    try {
      await renameRetrying(temp, file);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw this.failure('write', file, error);
    }
  }

  private async remove(name: string): Promise<boolean> {
    const { file } = this.pathOf(name);
    try {
      await unlink(file);
      return true;
    } catch (error) {
      if (code(error) === 'ENOENT') return false;
      throw this.failure('delete', file, error);
    }
  }

  /** The value stored under key; throws CacheMiss when there is none or it expired. */
  async get<T = unknown>(key: string): Promise<T> {
    return (await this.load(`key\0${checkKey(key)}`, key)) as T;
  }

  /** Stores value for `timeout` seconds. Unserializable values throw CacheopsSerializationError; nothing is written. */
  async set(key: string, value: unknown, timeout?: number): Promise<void> {
    const ttl = timeout === undefined ? this.timeout : checkTimeout(timeout, 'timeout');
    await this.save(`key\0${checkKey(key)}`, value, ttl);
  }

  /** Deletes key; true when something was there. */
  async delete(key: string): Promise<boolean> {
    return this.remove(`key\0${checkKey(key)}`);
  }

  /**
   * Caches a function by its arguments for a time, on disk. Identity as in
   * `cacheops.cached`: the declaration site, or `key`.
   * @example
   * const top = files.cached({ timeout: 600, extra: 'v2' })(async (category: string) => load(category));
   */
  cached(options: FileCachedOptions = {}): <A extends unknown[], R>(fn: (...args: A) => Promise<R> | R) => CachedFunction<A, R> {
    checkFunctionOptions(options, 'cached', ['timeout', 'extra', 'key']);
    const site = options.key ?? declarationSite();
    const timeout = options.timeout ?? this.timeout;
    return <A extends unknown[], R>(fn: (...args: A) => Promise<R> | R): CachedFunction<A, R> => {
      checkFunction(fn);
      const identity = functionIdentity(site, fn);
      const nameOf = (args: A): string => `fn\0${callHash(identity, options.extra, args)}`;
      const label = (args: A): string => `${fn.name || 'anonymous'}(${stableStringify(args)})`;
      const wrapped = (async (...args: A): Promise<R> => {
        const name = nameOf(args);
        try {
          return (await this.load(name, label(args))) as R;
        } catch (error) {
          if (!(error instanceof CacheMiss)) throw error;
        }
        const value = await fn(...args);
        await this.save(name, value, timeout);
        return value;
      }) as CachedFunction<A, R>;
      wrapped.invalidate = async (...args: A) => this.remove(nameOf(args));
      wrapped.key = (...args: A): CachedEntry<R> => ({
        get: async () => (await this.load(nameOf(args), label(args))) as R,
        set: async (value: R) => this.save(nameOf(args), value, timeout),
        delete: async () => this.remove(nameOf(args)),
      });
      return wrapped;
    };
  }

  /**
   * Removes expired entries (and temporary files abandoned by writers that
   * died) and empty fan-out directories; returns how many entries it removed.
   * Only touches files of this layout, whatever else the directory holds.
   */
  async clean(): Promise<number> {
    let removed = 0;
    const now = Date.now();
    for (const first of await this.list(this.dir)) {
      if (!FAN_NAME.test(first)) continue;
      for (const second of await this.list(join(this.dir, first))) {
        if (!FAN_NAME.test(second)) continue;
        const folder = join(this.dir, first, second);
        for (const name of await this.list(folder)) {
          const file = join(folder, name);
          if (ENTRY_NAME.test(name)) {
            const entry = await this.readEntry(file, true).catch(() => undefined);
            if (entry && entry.expires <= now && (await this.discard(file, entry.ino))) removed += 1;
          } else if (TEMP_NAME.test(name)) {
            const info = await stat(file).catch(() => undefined);
            if (info && now - info.mtimeMs > STALE_TEMP_MS) await unlink(file).catch(() => undefined);
          }
        }
        await rmdir(folder).catch(() => undefined); // fails (as it should) unless empty
      }
      await rmdir(join(this.dir, first)).catch(() => undefined);
    }
    return removed;
  }

  /** Directory entries; none when it does not exist. */
  private async list(dir: string): Promise<string[]> {
    try {
      return await readdir(dir);
    } catch (error) {
      if (code(error) === 'ENOENT') return [];
      throw this.failure('list', dir, error);
    }
  }
}

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key === '') throw new CacheopsError('cache key must be a non-empty string');
  return key;
}

/** Windows refuses to rename over a file another process has open, for a moment: retry. */
async function renameRetrying(from: string, to: string): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await rename(from, to);
      return;
    } catch (error) {
      const c = code(error);
      if (process.platform !== 'win32' || attempt >= 20 || (c !== 'EPERM' && c !== 'EACCES' && c !== 'EBUSY')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

