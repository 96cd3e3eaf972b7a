/**
 * What makes a cached function and its call unique, shared by every function
 * cache (Redis in functions.ts, disk in file-cache.ts).
 *
 * Function identity is the place the cache is declared (file, line and column
 * of the `cachedAs(...)` / `cached(...)` call), the function's name and source
 * text, or an explicit `key`. All of that is the same in every process running
 * the same code, and differs between two functions. Closures made at one place
 * that differ only by captured values share an identity: give them `extra`.
 */
import { createHash } from 'node:crypto';
import { dirname, sep } from 'node:path';
import { checkTimeout } from '../core/config';
import { CacheopsConfigError } from '../core/errors';
import { unknownName } from '../core/suggest';
import { stableStringify } from '../query/key';

/**
 * The caller's position: the first stack frame outside this package's own
 * directory, as `dir/dir/file:line:col` (the absolute part is dropped so that
 * two checkouts of one application agree).
 */
export function declarationSite(): string {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  // This file sits in features/ of the package's src/ (or dist/): the package's own frames are below its parent.
  const here = dirname(__dirname) + sep;
  for (const line of stack) {
    if (!line.includes(here) && !line.includes('node:internal')) {
      const m = /\(?([^()\s]+):(\d+):(\d+)\)?\s*$/.exec(line.trim());
      if (m) return `${m[1]!.split(/[\\/]/).slice(-3).join('/')}:${m[2]}:${m[3]}`;
    }
  }
  return '';
}

/** The identity digest of a function declared at `site` (or given an explicit key). */
export function functionIdentity(site: string, fn: { readonly name: string; toString(): string }): string {
  return createHash('sha1').update(site).update('\0').update(fn.name).update('\0').update(fn.toString()).digest('hex');
}

/** The digest of one call: identity, arguments and `extra` (a value, or a function of the arguments). */
export function callHash(identity: string, extra: unknown, args: readonly unknown[]): string {
  const extraValue = typeof extra === 'function' ? (extra as (...a: unknown[]) => unknown)(...args) : extra;
  return createHash('sha1').update('fn\0').update(identity).update('\0').update(stableStringify(args))
    .update('\0').update(stableStringify(extraValue)).digest('hex');
}

/** The options every function cache shares. */
export interface FunctionCacheOptions {
  /** Seconds an entry lives. */
  readonly timeout?: number;
  /** Part of the key: a value, or a function of the arguments. */
  readonly extra?: unknown;
  /** An explicit identity, instead of the declaration site. */
  readonly key?: string;
}

/** Validates function cache options; `known` lists what this cache accepts. */
export function checkFunctionOptions(o: object, where: string, known: readonly string[]): void {
  const opts = o as Record<string, unknown>;
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) throw new CacheopsConfigError(`${where}.${k}`, unknownName('option', k, known));
  }
  if (opts['timeout'] !== undefined) checkTimeout(opts['timeout'], `${where}.timeout`);
  if (opts['lock'] !== undefined && typeof opts['lock'] !== 'boolean') throw new CacheopsConfigError(`${where}.lock`, 'expected true or false');
  const key = opts['key'];
  if (key !== undefined && (typeof key !== 'string' || key === '')) throw new CacheopsConfigError(`${where}.key`, 'expected a non-empty string');
}

/** Throws unless fn is a function. */
export function checkFunction(fn: unknown): void {
  if (typeof fn !== 'function') throw new CacheopsConfigError('fn', 'expected a function to cache');
}
