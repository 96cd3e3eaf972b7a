/**
 * Decoder of PostgreSQL's `pgoutput` logical replication messages (protocol
 * version 1): the messages that say which rows a committed transaction changed.
 * Text values stay text; pg-rows.ts gives them meaning.
 */

/** One column of a tuple: null, unchanged TOASTed value (not sent), or its text. */
export type TupleValue = null | { readonly unchanged: true } | string;

export interface RelationColumn {
  readonly name: string;
  readonly typeOid: number;
  /** Part of the replica identity key. */
  readonly key: boolean;
}

export type PgMessage =
  | { readonly tag: 'begin'; readonly finalLsn: bigint; readonly commitTime: number; readonly xid: number }
  | { readonly tag: 'commit'; readonly commitLsn: bigint; readonly endLsn: bigint; readonly commitTime: number }
  | { readonly tag: 'relation'; readonly relid: number; readonly namespace: string; readonly name: string; readonly identity: string; readonly columns: readonly RelationColumn[] }
  | { readonly tag: 'insert'; readonly relid: number; readonly newRow: readonly TupleValue[] }
  | { readonly tag: 'update'; readonly relid: number; readonly oldRow: readonly TupleValue[] | undefined; readonly oldIsKey: boolean; readonly newRow: readonly TupleValue[] }
  | { readonly tag: 'delete'; readonly relid: number; readonly oldRow: readonly TupleValue[]; readonly oldIsKey: boolean }
  | { readonly tag: 'truncate'; readonly relids: readonly number[] }
  | { readonly tag: 'other'; readonly kind: string };

/** Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01. */
const PG_EPOCH_US = 946_684_800_000_000n;

/** A PostgreSQL timestamp (microseconds since 2000-01-01) as epoch milliseconds. */
function pgTimeToMs(us: bigint): number {
  return Number((us + PG_EPOCH_US) / 1000n);
}

/** LSN text (`16/B374D848`) from its 64-bit value, and back. */
export function lsnText(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function parseLsn(text: string): bigint {
  const [hi = '0', lo = '0'] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  byte(): string { return String.fromCharCode(this.buf.readUInt8(this.at++)); }
  int8(): number { return this.buf.readInt8(this.at++); }
  int16(): number { const v = this.buf.readInt16BE(this.at); this.at += 2; return v; }
  int32(): number { const v = this.buf.readInt32BE(this.at); this.at += 4; return v; }
  uint32(): number { const v = this.buf.readUInt32BE(this.at); this.at += 4; return v; }
  int64(): bigint { const v = this.buf.readBigInt64BE(this.at); this.at += 8; return v; }
  string(): string {
    const end = this.buf.indexOf(0, this.at);
    const s = this.buf.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }
  tuple(): TupleValue[] {
    const n = this.int16();
    const values: TupleValue[] = [];
    for (let i = 0; i < n; i += 1) {
      const kind = this.byte();
      if (kind === 'n') values.push(null);
      else if (kind === 'u') values.push({ unchanged: true });
      else if (kind === 't' || kind === 'b') {
        const len = this.int32();
        // Binary values are not asked for (no `binary` option): read as text would be wrong, so never guessed.
        values.push(kind === 't' ? this.buf.toString('utf8', this.at, this.at + len) : { unchanged: true });
        this.at += len;
      } else throw new Error(`pgoutput: unknown tuple value kind ${JSON.stringify(kind)}`);
    }
    return values;
  }
}

/** Decodes one pgoutput message. */
export function decodePgoutput(data: Buffer): PgMessage {
  const r = new Reader(data);
  const tag = r.byte();
  switch (tag) {
    case 'B': {
      const finalLsn = r.int64();
      const commitTime = pgTimeToMs(r.int64());
      return { tag: 'begin', finalLsn, commitTime, xid: r.uint32() };
    }
    case 'C': {
      r.int8();
      const commitLsn = r.int64();
      const endLsn = r.int64();
      return { tag: 'commit', commitLsn, endLsn, commitTime: pgTimeToMs(r.int64()) };
    }
    case 'R': {
      const relid = r.uint32();
      const namespace = r.string();
      const name = r.string();
      const identity = String.fromCharCode(r.int8());
      const n = r.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i += 1) {
        const flags = r.int8();
        const colName = r.string();
        const typeOid = r.uint32();
        r.int32(); // type modifier
        columns.push({ name: colName, typeOid, key: (flags & 1) === 1 });
      }
      return { tag: 'relation', relid, namespace, name, identity, columns };
    }
    case 'I': {
      const relid = r.uint32();
      r.byte(); // 'N'
      return { tag: 'insert', relid, newRow: r.tuple() };
    }
    case 'U': {
      const relid = r.uint32();
      let kind = r.byte();
      let oldRow: TupleValue[] | undefined;
      const oldIsKey = kind === 'K';
      if (kind === 'K' || kind === 'O') {
        oldRow = r.tuple();
        kind = r.byte();
      }
      return { tag: 'update', relid, oldRow, oldIsKey, newRow: r.tuple() };
    }
    case 'D': {
      const relid = r.uint32();
      const kind = r.byte();
      return { tag: 'delete', relid, oldIsKey: kind === 'K', oldRow: r.tuple() };
    }
    case 'T': {
      const n = r.int32();
      r.int8(); // options: CASCADE, RESTART IDENTITY (cascaded tables are listed too)
      const relids: number[] = [];
      for (let i = 0; i < n; i += 1) relids.push(r.uint32());
      return { tag: 'truncate', relids };
    }
    default:
      return { tag: 'other', kind: tag }; // Origin, Type, Message
  }
}
