/**
 * Query -> cache key hash. The key covers everything that changes the
 * result: the final SQL, bind values, replacements, dialect, the shape flags
 * that change what is returned, and the database unless `dbAgnostic`. It never
 * depends on object identity or on the order options were written in.
 */
import { createHash } from 'node:crypto';

/** JSON with sorted keys and explicit tags for values JSON loses. */
export function stableStringify(value: unknown): string {
  if (value === undefined) return 'u';
  if (value === null || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Date) return `D${value.toISOString()}`;
  if (Buffer.isBuffer(value)) return `X${value.toString('hex')}`;
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value instanceof Map) return `M${stableStringify([...value.entries()])}`;
  if (value instanceof Set) return `S${stableStringify([...value])}`;
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(String(value));
}

export interface QueryKeyParts {
  readonly dialect: string;
  /** Only when the profile is not dbAgnostic. */
  readonly db?: string;
  readonly sql: string;
  readonly bind?: unknown;
  readonly replacements?: unknown;
  /** What shape the result takes: raw, plain, nest, the op. */
  readonly shape: string;
}

export function queryHash(parts: QueryKeyParts): string {
  const h = createHash('sha1');
  h.update(parts.dialect).update('\0').update(parts.db ?? '').update('\0').update(parts.shape).update('\0').update(parts.sql);
  if (parts.bind !== undefined) h.update('\0b').update(stableStringify(parts.bind));
  if (parts.replacements !== undefined) h.update('\0r').update(stableStringify(parts.replacements));
  return h.digest('hex');
}
