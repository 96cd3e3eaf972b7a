/**
 * The Redis Cluster hash slot of a key (CRC16-XMODEM of the key, or of its
 * hash tag, modulo 16384), as the cluster specification defines it: the near
 * cache reads a key on the tracking connections of the node owning its slot.
 */

export const SLOT_COUNT = 16384;

const TABLE = new Uint16Array(256);
for (let i = 0; i < 256; i += 1) {
  let crc = i << 8;
  for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  TABLE[i] = crc;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc;
}

/** The part of a key that is hashed: the first `{...}` when it is not empty, else the whole key. */
function hashedPart(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

export function keySlot(key: string): number {
  return crc16(Buffer.from(hashedPart(key))) % SLOT_COUNT;
}
