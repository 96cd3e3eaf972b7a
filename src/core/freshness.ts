/**
 * The fresh-until time of a stale-while-revalidate value, carried in front of
 * its bytes: one marker byte, then the time (ms since the epoch, float64 big
 * endian) until which it is fresh. The Redis key itself lives `timeout +
 * staleWhileRevalidate` seconds; between the two a reader may serve it stale
 * (read-through.ts). Keeping the time in the value keeps a fresh hit one GET.
 *
 * Only reads with a `staleWhileRevalidate` profile look for the header: bytes
 * of other reads are left as they are (a fragment's text may begin with any
 * byte). Such a read finding a headed value (a process with another config)
 * fails to decode it, which is a miss; a read with the option finding a value
 * without the header takes it as fresh, as its Redis TTL is its timeout.
 *
 * The time is the storing process's clock: clock skew between hosts moves
 * the fresh/stale boundary by the skew, never past the Redis TTL, and never
 * touches invalidation (an invalidated value is gone, whatever its header).
 */

const MARK = 0xf5;
export const FRESHNESS_HEADER_BYTES = 9;

/** The bytes to store: the header, then the payload. */
export function withFreshness(payload: Buffer, freshUntil: number): Buffer {
  const out = Buffer.allocUnsafe(FRESHNESS_HEADER_BYTES + payload.length);
  out[0] = MARK;
  out.writeDoubleBE(freshUntil, 1);
  payload.copy(out, FRESHNESS_HEADER_BYTES);
  return out;
}

export interface Freshness {
  /** The bytes without the header (what the read's decode reads). */
  readonly payload: Buffer;
  /** Date.now() until which the value is fresh; Infinity when it carries no header. */
  readonly freshUntil: number;
  /** The header itself (undefined when none): the refresh script compares it to tell a refreshed value. */
  readonly header: Buffer | undefined;
}

/** Splits stored bytes into header and payload (for reads with staleWhileRevalidate only). */
export function readFreshness(bytes: Buffer): Freshness {
  if (bytes.length < FRESHNESS_HEADER_BYTES || bytes[0] !== MARK) return { payload: bytes, freshUntil: Infinity, header: undefined };
  return {
    payload: bytes.subarray(FRESHNESS_HEADER_BYTES),
    freshUntil: bytes.readDoubleBE(1),
    header: bytes.subarray(0, FRESHNESS_HEADER_BYTES),
  };
}
