/**
 * The `cacheops` option of a read or a write, checked. TypeScript users get its
 * type from augment.ts; plain JavaScript gets this: a misspelt key (`{ opz: 1 }`,
 * `{ invalidat: false }`) or a value of the wrong type rejects the call with a
 * `CacheopsConfigError` instead of being ignored (a write's, before anything is
 * written). The fast path parses a read's option once per fingerprint (the
 * fingerprint encodes it exactly), so a hit pays nothing for the check.
 */
import { checkTimeout, describeValue, parseOps, type CacheOp } from './config';
import { CacheopsConfigError } from './errors';
import { unknownName } from './suggest';

/**
 * The option of one read: `'auto'` (absent: the profile's ops decide), `'off'`
 * (`false`), or manual caching with the overrides given.
 */
export type ParsedFindOption =
  | 'auto'
  | 'off'
  | { readonly ops: ReadonlySet<CacheOp> | undefined; readonly timeout: number | undefined; readonly lock: boolean | undefined };

/**
 * `invalidate` is a write's key, the others a read's. Each side accepts (and
 * checks) the other's because calls that read and write (findOrCreate) hand
 * one options object to both, but an error names only its own side's keys.
 */
const READ_KEYS = ['ops', 'timeout', 'lock'];
const WRITE_KEYS = ['invalidate'];
const ALL_KEYS = [...READ_KEYS, ...WRITE_KEYS];

const MANUAL: ParsedFindOption = { ops: undefined, timeout: undefined, lock: undefined };

function checkBoolean(value: unknown, key: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new CacheopsConfigError(key, `expected true or false, got ${describeValue(value)}`);
  }
  return value;
}

/** Parses the `cacheops` option of a read; throws `CacheopsConfigError` naming a bad key. */
export function parseFindOption(option: unknown): ParsedFindOption {
  if (option === undefined) return 'auto';
  if (option === false) return 'off';
  if (option === true) return MANUAL;
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw new CacheopsConfigError('cacheops', `the find option is true, false or { ops, timeout, lock }, got ${describeValue(option)}`);
  }
  const record = option as Record<string, unknown>;
  checkKeys(record, 'find', READ_KEYS);
  checkBoolean(record['invalidate'], 'cacheops.invalidate');
  return readKeys(record);
}

/**
 * Parses the `cacheops` option of a write: whether it invalidates (false only
 * for `{ invalidate: false }`); throws `CacheopsConfigError` naming a bad key.
 */
export function parseWriteOption(option: unknown): boolean {
  if (option === undefined || typeof option === 'boolean') return true;
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw new CacheopsConfigError('cacheops', `the write option is true, false or { invalidate }, got ${describeValue(option)}`);
  }
  const record = option as Record<string, unknown>;
  checkKeys(record, 'write', WRITE_KEYS);
  const invalidate = checkBoolean(record['invalidate'], 'cacheops.invalidate');
  readKeys(record);
  return invalidate !== false;
}

function checkKeys(record: Record<string, unknown>, side: 'find' | 'write', own: readonly string[]): void {
  for (const key of Object.keys(record)) {
    if (!ALL_KEYS.includes(key)) {
      throw new CacheopsConfigError(`cacheops.${key}`, unknownName(`key of the cacheops ${side} option`, key, own));
    }
  }
}

function readKeys(record: Record<string, unknown>): Exclude<ParsedFindOption, 'auto' | 'off'> {
  return {
    ops: record['ops'] === undefined ? undefined : parseOps(record['ops'], 'cacheops.ops'),
    timeout: record['timeout'] === undefined ? undefined : checkTimeout(record['timeout'], 'cacheops.timeout'),
    lock: checkBoolean(record['lock'], 'cacheops.lock'),
  };
}
