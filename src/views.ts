/**
 * View caching for Express/Connect handlers (implemented in issue 4 work).
 */
import type { CacheopsCore } from './cacheops';
import type { Sample } from './samples';

export interface ViewCacheOptions {
  readonly timeout?: number;
  readonly extra?: (req: unknown) => unknown;
}
export type Handler = (req: unknown, res: unknown, next?: (err?: unknown) => void) => unknown;
export type CachedHandler = Handler & { invalidate(path: string, ...extra: unknown[]): Promise<boolean> };

export function cachedViewFactory(_core: CacheopsCore, _samplesAndOptions: readonly (Sample | ViewCacheOptions)[], _withSamples: boolean): (handler: Handler) => CachedHandler {
  throw new Error('view caching: not built yet');
}
