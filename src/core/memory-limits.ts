/**
 * The bounds of the process-memory structures that grow with the key space
 * (the `memory` option; docs/memory.md lists every bound and its default).
 * The near cache has its own bounds, per profile (`near: { maxEntries, maxBytes }`).
 */
import type { LruLimits } from './lru';

export interface MemoryOptions {
  /** Gets of `localGet` profiles kept in process memory (default 10,000 entries, 16 MiB). */
  readonly localGet?: { readonly maxEntries?: number; readonly maxBytes?: number };
  /** Prepared selects the fast path keeps, one per call shape (default 2,000; about 4 KB each). */
  readonly fastPath?: { readonly maxEntries?: number };
  /** Key prefixes a prefix function returned, and the prefixes of each fragment (default 10,000). */
  readonly prefixes?: { readonly maxEntries?: number };
}

export interface MemoryLimits {
  readonly localGet: Required<LruLimits>;
  readonly fastPath: LruLimits;
  readonly prefixes: LruLimits;
}

export const DEFAULT_MEMORY_LIMITS: MemoryLimits = {
  localGet: { maxEntries: 10_000, maxBytes: 16 * 1024 * 1024 },
  fastPath: { maxEntries: 2_000 },
  prefixes: { maxEntries: 10_000 },
};

/** Which keys each part of the `memory` option takes. */
export const MEMORY_KEYS: Readonly<Record<keyof MemoryLimits, readonly string[]>> = {
  localGet: ['maxEntries', 'maxBytes'],
  fastPath: ['maxEntries'],
  prefixes: ['maxEntries'],
};

/** The bounds of one profile's near cache (`near: { maxEntries, maxBytes }`, near/near-cache.ts). */
export interface NearLimits {
  readonly maxEntries: number;
  readonly maxBytes: number;
}

export const DEFAULT_NEAR_LIMITS: NearLimits = { maxEntries: 10_000, maxBytes: 32 * 1024 * 1024 };
