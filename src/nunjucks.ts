import type { Cacheops } from './install';
export class CacheopsExtension {
  constructor(readonly cacheops: Cacheops) {}
}
