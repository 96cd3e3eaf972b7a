/**
 * Binlog events, from the raw bytes the server sends a replica: the header,
 * and the events the change stream acts on (TABLE_MAP, WRITE/UPDATE/DELETE_ROWS
 * v1 and v2, QUERY, GTID, XID, ROTATE). Row images are split into column
 * values by mariadb-values.ts.
 */
import { UnknownSize, decodeValue, metaBytes, readMeta, type SchemaColumn, type WallOffset } from './mariadb-values';

export const EV = {
  QUERY: 2, ROTATE: 4, FORMAT_DESCRIPTION: 15, XID: 16, TABLE_MAP: 19,
  WRITE_V1: 23, UPDATE_V1: 24, DELETE_V1: 25, HEARTBEAT: 27, WRITE_V2: 30, UPDATE_V2: 31, DELETE_V2: 32,
  /** MySQL: an UPDATE carrying only changed JSON parts. */
  PARTIAL_UPDATE: 39,
  MARIA_GTID: 162, MARIA_QUERY_COMPRESSED: 165,
} as const;

/** MariaDB's compressed row events (log_bin_compress): their rows are not read here. */
const COMPRESSED_ROWS = new Set([166, 167, 168, 169, 170, 171]);
const ROWS = new Map<number, 'write' | 'update' | 'delete'>([
  [EV.WRITE_V1, 'write'], [EV.UPDATE_V1, 'update'], [EV.DELETE_V1, 'delete'],
  [EV.WRITE_V2, 'write'], [EV.UPDATE_V2, 'update'], [EV.DELETE_V2, 'delete'],
]);

export interface EventHeader {
  /** Seconds since the epoch: when the statement started on the server (for a transaction's events: its start). */
  readonly timestamp: number;
  readonly type: number;
  readonly serverId: number;
  /** The position after this event in its binlog file. */
  readonly nextPosition: number;
}

export interface TableMap {
  readonly tableId: number;
  readonly schema: string;
  readonly table: string;
  readonly types: readonly number[];
  readonly metas: readonly number[];
}

export type BinlogEvent =
  | { readonly kind: 'rotate'; readonly file: string; readonly position: number }
  | { readonly kind: 'gtid'; readonly gtid: string; readonly domain: number; readonly standalone: boolean }
  | { readonly kind: 'query'; readonly schema: string; readonly sql: string }
  | { readonly kind: 'xid' }
  | { readonly kind: 'tableMap'; readonly map: TableMap }
  | { readonly kind: 'rows'; readonly op: 'write' | 'update' | 'delete'; readonly tableId: number; readonly body: Buffer }
  /** Rows of a table that are not readable here (compressed, partial): the table's change is model-wide. */
  | { readonly kind: 'opaqueRows'; readonly tableId: number }
  /** A statement that is not readable here (compressed): everything the stream covers. */
  | { readonly kind: 'opaqueQuery' }
  | { readonly kind: 'other' };

export const HEADER_BYTES = 19;

export function readHeader(buf: Buffer): EventHeader {
  return { timestamp: buf.readUInt32LE(0), type: buf[4]!, serverId: buf.readUInt32LE(5), nextPosition: buf.readUInt32LE(13) };
}

/** A length-encoded integer: [value, bytes read]. */
function lenenc(buf: Buffer, at: number): [number, number] {
  const first = buf[at]!;
  if (first < 251) return [first, 1];
  if (first === 252) return [buf.readUInt16LE(at + 1), 3];
  if (first === 253) return [buf.readUIntLE(at + 1, 3), 4];
  return [Number(buf.readBigUInt64LE(at + 1)), 9];
}

const tableIdAt = (buf: Buffer, at: number): number => buf.readUIntLE(at, 6);

/** One event (header included, checksum removed). */
export function parseEvent(buf: Buffer): { header: EventHeader; event: BinlogEvent } {
  const header = readHeader(buf);
  const body = buf.subarray(HEADER_BYTES);
  return { header, event: parseBody(header, body) };
}

function parseBody(header: EventHeader, b: Buffer): BinlogEvent {
  const rowsOp = ROWS.get(header.type);
  if (rowsOp) {
    let at = 8;
    if (header.type >= EV.WRITE_V2) at += b.readUInt16LE(8); // v2: extra data, its length counting itself
    return { kind: 'rows', op: rowsOp, tableId: tableIdAt(b, 0), body: b.subarray(at) };
  }
  if (COMPRESSED_ROWS.has(header.type) || header.type === EV.PARTIAL_UPDATE) return { kind: 'opaqueRows', tableId: tableIdAt(b, 0) };
  switch (header.type) {
    case EV.ROTATE:
      return { kind: 'rotate', position: Number(b.readBigUInt64LE(0)), file: b.subarray(8).toString('utf8') };
    case EV.MARIA_GTID: {
      const seq = b.readBigUInt64LE(0);
      const domain = b.readUInt32LE(8);
      return { kind: 'gtid', domain, gtid: `${domain}-${header.serverId}-${seq}`, standalone: (b[12]! & 1) === 1 };
    }
    case EV.QUERY: {
      const schemaLength = b[8]!;
      const statusLength = b.readUInt16LE(11);
      const schemaAt = 13 + statusLength;
      return { kind: 'query', schema: b.subarray(schemaAt, schemaAt + schemaLength).toString('utf8'), sql: b.subarray(schemaAt + schemaLength + 1).toString('utf8') };
    }
    case EV.MARIA_QUERY_COMPRESSED:
      return { kind: 'opaqueQuery' };
    case EV.XID:
      return { kind: 'xid' };
    case EV.TABLE_MAP:
      return { kind: 'tableMap', map: tableMap(b) };
    default:
      return { kind: 'other' };
  }
}

function tableMap(b: Buffer): TableMap {
  const tableId = tableIdAt(b, 0);
  let at = 8;
  const schemaLength = b[at]!;
  const schema = b.subarray(at + 1, at + 1 + schemaLength).toString('utf8');
  at += 1 + schemaLength + 1;
  const tableLength = b[at]!;
  const table = b.subarray(at + 1, at + 1 + tableLength).toString('utf8');
  at += 1 + tableLength + 1;
  const [columns, n] = lenenc(b, at);
  at += n;
  const types = [...b.subarray(at, at + columns)];
  at += columns;
  const [, m] = lenenc(b, at);
  at += m;
  const metas: number[] = [];
  for (const type of types) {
    metas.push(readMeta(type, b, at));
    at += metaBytes(type);
  }
  return { tableId, schema, table, types, metas };
}

/** A row image: column name -> value; a column whose value is not decoded is absent. */
export type ImageRow = Record<string, unknown>;

const bit = (bitmap: Buffer, i: number): boolean => (bitmap[i >> 3]! & (1 << (i & 7))) !== 0;

/**
 * The row images of a rows event: for an UPDATE, pairs [before, after] in
 * sequence. `columns` names the table's columns in ordinal order. Throws
 * UnknownSize when a column cannot be measured, or when the images do not
 * cover every column (binlog_row_image other than FULL): the caller then
 * invalidates the table model-wide.
 */
export function rowImages(op: 'write' | 'update' | 'delete', map: TableMap, body: Buffer, columns: readonly SchemaColumn[], offset: WallOffset): ImageRow[] {
  const [count, n] = lenenc(body, 0);
  if (count !== map.types.length || columns.length !== count) throw new UnknownSize('the table changed since its columns were read');
  let at = n;
  const bitmapBytes = (count + 7) >> 3;
  const present = [body.subarray(at, at + bitmapBytes)];
  at += bitmapBytes;
  if (op === 'update') {
    present.push(body.subarray(at, at + bitmapBytes));
    at += bitmapBytes;
  }
  for (const bitmap of present) {
    for (let i = 0; i < count; i += 1) if (!bit(bitmap, i)) throw new UnknownSize('a row image without every column (binlog_row_image is not FULL)');
  }
  const rows: ImageRow[] = [];
  while (at < body.length) {
    const nulls = body.subarray(at, at + bitmapBytes);
    at += bitmapBytes;
    const row: ImageRow = {};
    for (let i = 0; i < count; i += 1) {
      const column = columns[i]!;
      if (bit(nulls, i)) {
        row[column.name] = null;
        continue;
      }
      const { value, size } = decodeValue(map.types[i]!, map.metas[i]!, column, body, at, offset);
      at += size;
      if (value !== undefined) row[column.name] = value;
    }
    rows.push(row);
  }
  return rows;
}
