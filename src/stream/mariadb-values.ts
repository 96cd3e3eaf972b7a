/**
 * One column value of a binlog row image: its size (every type whose size the
 * TABLE_MAP metadata tells) and, for the common types, the value a read gives
 * the tokenizer. A value read but not decoded is left out of the row (the row
 * then matches every conjunction of that field, as an unknown value must); a
 * type whose size is unknown stops the row image: the table's change is then
 * model-wide.
 */

/** Column type codes of the binlog (TABLE_MAP). */
export const T = {
  DECIMAL: 0, TINY: 1, SHORT: 2, LONG: 3, FLOAT: 4, DOUBLE: 5, NULL: 6, TIMESTAMP: 7, LONGLONG: 8, INT24: 9,
  DATE: 10, TIME: 11, DATETIME: 12, YEAR: 13, NEWDATE: 14, VARCHAR: 15, BIT: 16, TIMESTAMP2: 17, DATETIME2: 18,
  TIME2: 19, JSON: 245, NEWDECIMAL: 246, ENUM: 247, SET: 248, TINY_BLOB: 249, MEDIUM_BLOB: 250, LONG_BLOB: 251,
  BLOB: 252, VAR_STRING: 253, STRING: 254, GEOMETRY: 255,
} as const;

/** What information_schema.COLUMNS says of a column (the binlog has types, not names). */
export interface SchemaColumn {
  readonly name: string;
  readonly unsigned: boolean;
  /** Text types: their character set (blobs: undefined). */
  readonly charset: string | undefined;
  /** ENUM labels, in order (index 1 is the first). */
  readonly enumValues: readonly string[] | undefined;
  readonly primary: boolean;
}

/** How DATETIME wall-clock values map to instants: Sequelize's `timezone` offset in minutes, or undefined (a named zone: not decoded). */
export type WallOffset = number | undefined;

export class UnknownSize extends Error {}

/** Bytes of metadata each type carries in TABLE_MAP. */
export function metaBytes(type: number): number {
  switch (type) {
    case T.FLOAT: case T.DOUBLE: case T.BLOB: case T.TINY_BLOB: case T.MEDIUM_BLOB: case T.LONG_BLOB:
    case T.GEOMETRY: case T.JSON: case T.TIMESTAMP2: case T.DATETIME2: case T.TIME2:
      return 1;
    case T.VARCHAR: case T.VAR_STRING: case T.BIT: case T.NEWDECIMAL: case T.STRING: case T.ENUM: case T.SET:
      return 2;
    default:
      return 0;
  }
}

/** Reads metadata of one column: a number (2 bytes little-endian; STRING/ENUM/SET keep byte order as byte0 << 8 | byte1). */
export function readMeta(type: number, buf: Buffer, at: number): number {
  const n = metaBytes(type);
  if (n === 0) return 0;
  if (n === 1) return buf[at]!;
  if (type === T.STRING || type === T.ENUM || type === T.SET || type === T.NEWDECIMAL) return (buf[at]! << 8) | buf[at + 1]!;
  return buf.readUInt16LE(at);
}

const DIG2BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

function decimalSize(precision: number, scale: number): number {
  const intg = precision - scale;
  return Math.floor(intg / 9) * 4 + DIG2BYTES[intg % 9]! + Math.floor(scale / 9) * 4 + DIG2BYTES[scale % 9]!;
}

/** MySQL's binary DECIMAL as its decimal text. */
function decimal(raw: Buffer, precision: number, scale: number): string {
  const b = Buffer.from(raw);
  const negative = (b[0]! & 0x80) === 0;
  b[0]! ^= 0x80;
  if (negative) for (let i = 0; i < b.length; i += 1) b[i] = ~b[i]! & 0xff;
  const intg = precision - scale;
  let at = 0;
  const group = (bytes: number, digits: number): string => {
    const v = bytes === 0 ? 0 : b.readUIntBE(at, bytes);
    at += bytes;
    return String(v).padStart(digits, '0');
  };
  let whole = group(DIG2BYTES[intg % 9]!, intg % 9);
  for (let i = 0; i < Math.floor(intg / 9); i += 1) whole += group(4, 9);
  let frac = '';
  for (let i = 0; i < Math.floor(scale / 9); i += 1) frac += group(4, 9);
  frac += group(DIG2BYTES[scale % 9]!, scale % 9);
  const text = `${whole.replace(/^0+/, '') || '0'}${frac ? `.${frac}` : ''}`;
  return negative ? `-${text}` : text;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** Microseconds of a fractional-seconds part of `fsp` digits (big-endian, (fsp+1)/2 bytes). */
function fraction(buf: Buffer, at: number, fsp: number): number {
  const bytes = (fsp + 1) >> 1;
  if (bytes === 0) return 0;
  return buf.readUIntBE(at, bytes) * 10 ** (6 - 2 * bytes);
}

function wallDate(y: number, mo: number, d: number, h: number, mi: number, s: number, us: number, offset: WallOffset): Date | undefined {
  if (offset === undefined || mo === 0 || d === 0) return undefined;
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s, Math.floor(us / 1000)) - offset * 60_000);
}

export interface Decoded {
  /** The value, or undefined when it is not decoded (left out of the row). */
  readonly value: unknown;
  readonly size: number;
}

/** The column's value at `at`: its size always, its value when decoded. Throws UnknownSize for a type it cannot measure. */
export function decodeValue(type: number, meta: number, column: SchemaColumn | undefined, buf: Buffer, at: number, offset: WallOffset): Decoded {
  const unsigned = column?.unsigned ?? false;
  switch (type) {
    case T.TINY: return { size: 1, value: unsigned ? buf.readUInt8(at) : buf.readInt8(at) };
    case T.SHORT: return { size: 2, value: unsigned ? buf.readUInt16LE(at) : buf.readInt16LE(at) };
    case T.INT24: return { size: 3, value: unsigned ? buf.readUIntLE(at, 3) : buf.readIntLE(at, 3) };
    case T.LONG: return { size: 4, value: unsigned ? buf.readUInt32LE(at) : buf.readInt32LE(at) };
    case T.LONGLONG: return { size: 8, value: unsigned ? buf.readBigUInt64LE(at) : buf.readBigInt64LE(at) };
    // A FLOAT widened to a double is not the number the application wrote (0.1 -> 0.10000000149...): not decoded.
    case T.FLOAT: return { size: meta || 4, value: undefined };
    case T.DOUBLE: return { size: 8, value: buf.readDoubleLE(at) };
    case T.YEAR: { const v = buf[at]!; return { size: 1, value: v === 0 ? 0 : 1900 + v }; }
    case T.NEWDECIMAL: {
      const precision = meta >> 8;
      const scale = meta & 0xff;
      const size = decimalSize(precision, scale);
      return { size, value: decimal(buf.subarray(at, at + size), precision, scale) };
    }
    case T.DATE: {
      const v = buf.readUIntLE(at, 3);
      const d = v & 31; const mo = (v >> 5) & 15; const y = v >> 9;
      return { size: 3, value: mo === 0 || d === 0 ? undefined : `${pad(y, 4)}-${pad(mo)}-${pad(d)}` };
    }
    case T.TIMESTAMP: return { size: 4, value: new Date(buf.readUInt32LE(at) * 1000) };
    case T.TIMESTAMP2: {
      const size = 4 + ((meta + 1) >> 1);
      const seconds = buf.readUInt32BE(at);
      return { size, value: new Date(seconds * 1000 + Math.floor(fraction(buf, at + 4, meta) / 1000)) };
    }
    case T.DATETIME: {
      const v = buf.readBigUInt64LE(at);
      const date = Number(v / 1000000n); const time = Number(v % 1000000n);
      return { size: 8, value: wallDate(Math.floor(date / 10000), Math.floor(date / 100) % 100, date % 100, Math.floor(time / 10000), Math.floor(time / 100) % 100, time % 100, 0, offset) };
    }
    case T.DATETIME2: {
      const size = 5 + ((meta + 1) >> 1);
      const packed = buf.readUIntBE(at, 5) - 0x8000000000;
      const ymd = Math.floor(packed / 2 ** 17); const hms = packed % 2 ** 17;
      const ym = ymd >> 5;
      return { size, value: wallDate(Math.floor(ym / 13), ym % 13, ymd & 31, hms >> 12, (hms >> 6) & 63, hms & 63, fraction(buf, at + 5, meta), offset) };
    }
    case T.TIME: return { size: 3, value: undefined };
    case T.TIME2: return { size: 3 + ((meta + 1) >> 1), value: undefined };
    case T.VARCHAR: case T.VAR_STRING: {
      const prefix = meta < 256 ? 1 : 2;
      const len = prefix === 1 ? buf[at]! : buf.readUInt16LE(at);
      return { size: prefix + len, value: text(buf.subarray(at + prefix, at + prefix + len), column) };
    }
    case T.STRING: case T.ENUM: case T.SET: {
      let real = meta >> 8;
      let length = meta & 0xff;
      if (type === T.STRING && (real & 0x30) !== 0x30) {
        length |= ((real & 0x30) ^ 0x30) << 4;
        real |= 0x30;
      }
      if (real === T.ENUM || type === T.ENUM) {
        const index = length === 1 ? buf[at]! : buf.readUInt16LE(at);
        return { size: length, value: index === 0 ? '' : column?.enumValues?.[index - 1] };
      }
      if (real === T.SET || type === T.SET) return { size: length, value: undefined };
      const prefix = length < 256 ? 1 : 2;
      const len = prefix === 1 ? buf[at]! : buf.readUInt16LE(at);
      return { size: prefix + len, value: text(buf.subarray(at + prefix, at + prefix + len), column) };
    }
    case T.BIT: return { size: (meta >> 8) + ((meta & 0xff) > 0 ? 1 : 0), value: undefined };
    case T.BLOB: case T.TINY_BLOB: case T.MEDIUM_BLOB: case T.LONG_BLOB: case T.GEOMETRY: case T.JSON: {
      const len = buf.readUIntLE(at, meta);
      const body = buf.subarray(at + meta, at + meta + len);
      let value: unknown;
      if (type === T.BLOB || type === T.TINY_BLOB || type === T.MEDIUM_BLOB || type === T.LONG_BLOB) {
        value = column?.charset === undefined ? Buffer.from(body) : text(body, column);
      }
      return { size: meta + len, value };
    }
    default:
      throw new UnknownSize(`binlog column type ${type}`);
  }
}

/** Text in the column's character set; undefined for one not decoded here. */
function text(bytes: Buffer, column: SchemaColumn | undefined): string | undefined {
  const charset = column?.charset;
  if (charset === undefined) return undefined;
  if (charset.startsWith('utf8') || charset === 'ascii') return bytes.toString('utf8');
  if (charset === 'latin1') return bytes.toString('latin1');
  return undefined;
}
