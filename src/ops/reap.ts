/**
 * `cacheops reap-conjs`: removes from conj sets the value keys that no
 * longer exist, and from index sets the conj sets that no longer exist
 * (see lua/reap_conjs.lua for why they pile up and why removing them is safe).
 *
 * One SCAN pass (never KEYS) over the installation's keys finds the conj and
 * index sets; each set is read with SSCAN in chunks and each chunk checked by
 * one script call, so no call blocks Redis for long. Conj sets smaller than
 * `minConjSetSize` are skipped: they are cheap and expire with their values.
 * Index sets are checked after the conj sets, which may have emptied some.
 */
import { indexKeyOfConj, parseKey } from '../core/keys';
import { scanAll, type RedisClient, type ScriptCommands } from '../core/redis';
import { scanNodes } from './stats';

export interface ReapOptions {
  /** SCAN/SSCAN COUNT and the number of members checked per script call. */
  readonly chunkSize: number;
  /** Conj sets with fewer members are not checked. */
  readonly minConjSetSize: number;
  /** Called after each SCAN page. */
  readonly onProgress?: (progress: ReapProgress) => void;
}

export interface ReapProgress {
  /** Keys visited by SCAN so far, approximately (pages x COUNT, at most `totalKeys`). */
  readonly visitedKeys: number;
  /** Keys in the database(s) when the run started (DBSIZE). */
  readonly totalKeys: number;
  readonly deadMembers: number;
}

export interface ReapResult {
  /** Conj sets found. */
  conjSets: number;
  /** Conj sets big enough to be checked. */
  checkedConjSets: number;
  /** Value keys removed from conj sets. */
  deadMembers: number;
  /** Conj sets left empty (so deleted by Redis) and dropped from their index. */
  emptiedConjSets: number;
  /** Index sets found. */
  indexSets: number;
  /** Conj keys removed from index sets because the conj set no longer existed. */
  staleIndexEntries: number;
}

type Client = RedisClient & ScriptCommands;

/** Runs the script on one set, chunk by chunk of its members. */
async function reapSet(
  node: RedisClient, key: string, chunkSize: number,
  call: (members: string[]) => Promise<[number, number]>,
): Promise<{ removed: number; gone: boolean }> {
  let removed = 0;
  let gone = false;
  await scanAll((cursor) => node.sscan(key, cursor, 'COUNT', chunkSize), async (members) => {
    for (let i = 0; i < members.length; i += chunkSize) {
      const [n, g] = await call(members.slice(i, i + chunkSize));
      removed += n;
      gone = g === 1;
    }
    return !gone;
  });
  return { removed, gone };
}

/** The set-typed keys among `keys`, with their sizes (insideout keeps strings under conj:). */
async function setSizes(node: RedisClient, keys: readonly string[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  if (keys.length === 0) return sizes;
  const typed = await node.pipeline(keys.map((k) => ['type', k])).exec();
  const sets = keys.filter((_, i) => typed?.[i]?.[1] === 'set');
  if (sets.length === 0) return sizes;
  const cards = await node.pipeline(sets.map((k) => ['scard', k])).exec();
  sets.forEach((k, i) => sizes.set(k, Number(cards?.[i]?.[1] ?? 0)));
  return sizes;
}

/**
 * Reaps every conj and index set whose key matches `pattern` (a SCAN glob of
 * one installation's keys).
 */
export async function reapConjs(client: Client, pattern: string, options: ReapOptions): Promise<ReapResult> {
  const result: ReapResult = { conjSets: 0, checkedConjSets: 0, deadMembers: 0, emptiedConjSets: 0, indexSets: 0, staleIndexEntries: 0 };
  const nodes = scanNodes(client);
  let totalKeys = 0;
  for (const node of nodes) totalKeys += await node.dbsize();
  let visitedKeys = 0;
  const chunk = options.chunkSize;

  for (const node of nodes) {
    const indexKeys: string[] = [];
    await scanAll((cursor) => node.scan(cursor, 'MATCH', pattern, 'COUNT', chunk), async (keys) => {
      const conjKeys: string[] = [];
      for (const key of keys) {
        const kind = parseKey(key)?.kind;
        if (kind === 'conj') conjKeys.push(key);
        else if (kind === 'idx') indexKeys.push(key);
      }
      for (const [key, size] of await setSizes(node, conjKeys)) {
        result.conjSets += 1;
        const index = indexKeyOfConj(key);
        if (size < options.minConjSetSize || index === undefined) continue;
        result.checkedConjSets += 1;
        const { removed, gone } = await reapSet(node, key, chunk,
          (members) => client.cacheopsReapConjs(2 + members.length, key, index, ...members, 'conj'));
        result.deadMembers += removed;
        if (gone) result.emptiedConjSets += 1;
      }
      visitedKeys = Math.min(totalKeys, visitedKeys + chunk);
      options.onProgress?.({ visitedKeys, totalKeys, deadMembers: result.deadMembers });
    });

    for (const key of (await setSizes(node, indexKeys)).keys()) {
      result.indexSets += 1;
      const { removed } = await reapSet(node, key, chunk,
        (members) => client.cacheopsReapConjs(1 + members.length, key, ...members, 'idx'));
      result.staleIndexEntries += removed;
    }
  }
  options.onProgress?.({ visitedKeys: totalKeys, totalKeys, deadMembers: result.deadMembers });
  return result;
}
