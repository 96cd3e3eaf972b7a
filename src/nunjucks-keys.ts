import type { Cacheops } from './install';
export async function invalidateFragmentOf(_cacheops: Cacheops, _name: string, _extras: readonly unknown[]): Promise<void> {
  throw new Error('fragment caching: not built yet');
}
