/**
 * Column values -> tokens, the atoms of conjunction keys.
 *
 * A query condition `col = v` and a row whose `col` holds `w` must produce the
 * same token whenever the database considers `v = w` (else a write would miss
 * the query: a stale read). Producing the same token for values the database
 * tells apart only costs an extra invalidation. So tokens fold values the way
 * the column type and dialect compare them, erring towards equality:
 *
 * - integers/decimals: one canonical decimal (`1`, `'01'`, `1n`, `'1.0'` -> `n1`); a JS number
 *   integer past 2^53 has none (it may be a rounded read of a BIGINT);
 * - booleans: `b1` / `b0`; NULL: `N` (never equal to the string 'null', `s…`);
 * - strings: `s` + text; on MySQL/MariaDB (case- and accent-insensitive, PAD SPACE
 *   collations) printable-ASCII text is lower-cased and right-trimmed, and other
 *   text has no token at all;
 * - dates: `d` + epoch ms of a Date; DATEONLY: `D` + 'YYYY-MM-DD'; BLOB: `x` + hex.
 *
 * `undefined` means "no token": as a query condition it is not granular (may
 * match anything); as a row value it matches every conjunction of that field.
 */

/** The part of a Sequelize attribute definition tokens need. */
export interface ColumnLike {
  readonly type: unknown;
}

export type TokenKind = 'number' | 'boolean' | 'string' | 'ci-string' | 'date' | 'dateonly' | 'blob' | 'none';

const NUMERIC = new Set(['INTEGER', 'BIGINT', 'SMALLINT', 'TINYINT', 'MEDIUMINT', 'DECIMAL', 'NUMERIC']);
const STRINGS = new Set(['STRING', 'TEXT', 'CHAR', 'ENUM']);
const CASE_INSENSITIVE = new Set(['CITEXT', 'UUID', 'UUIDV1', 'UUIDV4']);

function typeKey(type: unknown): string {
  if (type === null || (typeof type !== 'object' && typeof type !== 'function')) return '';
  const key = (type as { key?: unknown }).key;
  return typeof key === 'string' ? key : '';
}

/** How values of a column are tokenized on a dialect. */
export function tokenKind(column: ColumnLike, dialect: string): TokenKind {
  const key = typeKey(column.type);
  if (NUMERIC.has(key)) return 'number';
  if (key === 'BOOLEAN') return 'boolean';
  if (key === 'DATE') return 'date';
  if (key === 'DATEONLY') return 'dateonly';
  if (key === 'BLOB') return 'blob';
  if (CASE_INSENSITIVE.has(key)) return 'ci-string';
  if (STRINGS.has(key)) return dialect === 'mysql' || dialect === 'mariadb' ? 'ci-string' : 'string';
  return 'none';
}

const DECIMAL_RE = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** Canonical decimal text of a numeric value, or undefined if it is not one. */
export function canonicalNumber(value: unknown): string | undefined {
  let text: string;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return undefined;
    text = String(value);
  } else if (typeof value === 'bigint') {
    return value.toString();
  } else if (typeof value === 'string') {
    text = value.trim();
  } else {
    return undefined;
  }
  const m = DECIMAL_RE.exec(text);
  if (!m) return undefined;
  const [, sign = '', intPart = '', fracPart = '', expPart] = m;
  if (intPart === '' && fracPart === '') return undefined;
  const exp = expPart === undefined ? 0 : Number.parseInt(expPart, 10);
  if (Math.abs(exp) > 400) return undefined;
  let digits = intPart + fracPart;
  let point = intPart.length + exp;
  if (point < 0) {
    digits = '0'.repeat(-point) + digits;
    point = 0;
  } else if (point > digits.length) {
    digits += '0'.repeat(point - digits.length);
  }
  const whole = digits.slice(0, point).replace(/^0+/, '') || '0';
  const frac = digits.slice(point).replace(/0+$/, '');
  const body = frac ? `${whole}.${frac}` : whole;
  return body === '0' || sign !== '-' ? body : `-${body}`;
}

function booleanToken(value: unknown): string | undefined {
  if (value === true || value === 1 || value === '1' || value === 't' || value === 'true') return 'b1';
  if (value === false || value === 0 || value === '0' || value === 'f' || value === 'false') return 'b0';
  return undefined;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** The token of `value` in a column of this kind, or undefined (see the module comment). */
export function tokenOf(kind: TokenKind, value: unknown): string | undefined {
  if (value === null) return kind === 'none' ? undefined : 'N';
  switch (kind) {
    case 'number': {
      if (typeof value === 'boolean') return value ? 'n1' : 'n0';
      // A JS number past 2^53 may be a rounded read of the stored integer (SQLite's driver reads
      // BIGINTs as doubles): its digits cannot be trusted, so it matches anything.
      if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value)) return undefined;
      const n = canonicalNumber(value);
      return n === undefined ? undefined : `n${n}`;
    }
    case 'boolean':
      return booleanToken(value);
    case 'string':
      return typeof value === 'string' ? `s${value}` : undefined;
    case 'ci-string':
      if (typeof value !== 'string' || !PRINTABLE_ASCII.test(value)) return undefined;
      return `s${value.toLowerCase().replace(/ +$/, '')}`;
    case 'date':
      if (value instanceof Date && !Number.isNaN(value.getTime())) return `d${value.getTime()}`;
      return undefined;
    case 'dateonly':
      return typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value) ? `D${value}` : undefined;
    case 'blob':
      return Buffer.isBuffer(value) ? `x${value.toString('hex')}` : undefined;
    default:
      return undefined;
  }
}
