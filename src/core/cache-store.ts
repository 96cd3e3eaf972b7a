/**
 * Get/set/invalidate against Redis, in terms of hashes, tables and tokens.
 * Knows the key layout (keys.ts) and the scripts (lua/), nothing of Sequelize.
 *
 * Race protection (why a value read from the database before a concurrent
 * write's invalidation is never stored so that it outlives it): every
 * invalidation bumps a per-table epoch in the same script that deletes the
 * values. A miss learns the epochs of the tables it depends on in the same
 * round trip as the failed GET (fetch.lua), before it queries the database; its
 * store (store.lua) is refused when any of them moved meanwhile. A write's
 * invalidation runs after the write is committed, so either the reader's
 * snapshot comes after the invalidation (its database read, later still, sees
 * the write) or the store finds a moved epoch, or the store happens before
 * the invalidation, which then deletes it. The hit path pays nothing extra:
 * the epochs come back only on a miss.
 */
import { randomBytes } from 'node:crypto';
import { isCluster, scanAll } from './redis';
import { conjKey, conjPrefix, epochsKey, fenceKey, escapeKeyPart, genKey, indexKey, indexPrefix, lockKey, namespace, schemesKey, simpleKey, valueKey, allKeysPattern, hashText, isStreamKey } from './keys';
import type { Conj } from './tree';
import { isOomError } from './pressure';
import { GuardedRedis, INVALIDATION } from './guarded-redis';

export type { StoreOptions } from './guarded-redis';

/** What a cached value depends on: a table and the conjunctions of its rows that matter. */
export interface Dependency {
  /** Real table name (schema-qualified where there is a schema). */
  readonly table: string;
  /** Attribute -> token conjunctions; `[{}]` (an empty conjunction) for "any row". */
  readonly conjs: readonly Conj[];
}

/** The epochs a miss saw, to be checked by its store. */
export interface Snapshot {
  readonly fields: readonly string[];
  readonly values: readonly string[];
  readonly lockToken: string;
}

export type FetchResult =
  | { readonly kind: 'hit'; readonly bytes: Buffer }
  | { readonly kind: 'miss'; readonly snapshot: Snapshot; readonly lockHeld: boolean }
  | { readonly kind: 'unavailable' };

/** Who refreshes a stale value (refresh.lua). */
export type RefreshResult =
  /** The value changed since the reader read it (a refresh stored it): these bytes are current. */
  | { readonly kind: 'changed'; readonly bytes: Buffer }
  /** 'stale': the value the reader found is still there; 'gone': it was invalidated or expired (a miss). */
  | { readonly kind: 'stale' | 'gone'; readonly snapshot: Snapshot; readonly lockHeld: boolean }
  | { readonly kind: 'unavailable' };

/** What became of a store: stored, refused (an invalidation raced it, or Redis is out), or dropped because Redis is full. */
export type StoreResult = 'stored' | 'refused' | 'full';

/** One row to invalidate by: attribute -> token; absent attributes match everything. */
export type RowTokens = ReadonlyMap<string, string>;

export interface TableInvalidation {
  readonly table: string;
  /** The rows' states (old and new), or 'all' for the whole table. */
  readonly rows: readonly RowTokens[] | 'all';
}

/**
 * `writes: 'stream'`: the transactions an invalidation of the change stream
 * covers, told to the writers waiting for them in the same script (lua/includes/announce.lua).
 */
export interface DoneAnnouncement {
  /** The namespace of the marks (shard 0 of the installation's prefix). */
  readonly ns: string;
  readonly marks: readonly string[];
  readonly ttlMs: number;
  readonly channel: string;
  /** The ids, comma-separated. */
  readonly ids: string;
}



function schemeOf(conj: Conj): { scheme: string; conj: string } {
  const fields = [...conj.keys()].map(escapeKeyPart).sort();
  const byEscaped = new Map([...conj].map(([k, v]) => [escapeKeyPart(k), escapeKeyPart(v)]));
  return { scheme: fields.join(','), conj: fields.map((f) => `${f}=${byEscaped.get(f)!}`).join('&') };
}

export class CacheStore extends GuardedRedis {
  /** The value by a plain GET (null: none; undefined: Redis unavailable while degrading). Not for insideout mode. */
  getValue(prefix: string, hash: string): Promise<Buffer | null | undefined> {
    const ns = this.nsFor(prefix, hash);
    return this.guard<Buffer | null | undefined>('a cache read', () => this.client.getBuffer(valueKey(ns, hash)), undefined);
  }

  /** One round trip: the value, or on a miss the epochs (and the lock, when lockMs > 0). */
  async fetch(prefix: string, hash: string, tables: readonly string[], lockMs: number): Promise<FetchResult> {
    const ns = this.nsFor(prefix, hash);
    const token = lockMs > 0 ? randomBytes(8).toString('hex') : '';
    const escaped = tables.map(escapeKeyPart);
    const args = [valueKey(ns, hash), epochsKey(ns), lockKey(ns, hash), lockMs, token, ...escaped];
    const reply = await this.guard<Buffer | Buffer[] | undefined>('a cache read', () =>
      (this.options.insideout ? this.client.cacheopsFetchInsideoutBuffer(...args) : this.client.cacheopsFetchBuffer(...args)), undefined);
    if (reply === undefined) return { kind: 'unavailable' };
    if (!Array.isArray(reply)) return { kind: 'hit', bytes: reply };
    const [lock, ...epochs] = reply.map((b) => b.toString());
    return {
      kind: 'miss',
      lockHeld: lock === '0',
      snapshot: { fields: ['*', ...escaped], values: epochs, lockToken: token },
    };
  }

  /**
   * A reader found a stale value (its freshness header is `header`): takes the
   * refresh lease and the epoch snapshot in one round trip, unless the value is
   * gone (then it is a miss: the lease and snapshot serve that miss) or changed.
   */
  async refresh(prefix: string, hash: string, tables: readonly string[], header: Buffer, lockMs: number): Promise<RefreshResult> {
    const ns = this.nsFor(prefix, hash);
    const token = randomBytes(8).toString('hex');
    const escaped = tables.map(escapeKeyPart);
    const args = [valueKey(ns, hash), epochsKey(ns), lockKey(ns, hash), lockMs, token, header, ...escaped];
    const reply = await this.guard<Buffer | Buffer[] | undefined>('a cache read', () =>
      (this.options.insideout ? this.client.cacheopsRefreshInsideoutBuffer(...args) : this.client.cacheopsRefreshBuffer(...args)), undefined);
    if (reply === undefined) return { kind: 'unavailable' };
    if (!Array.isArray(reply)) return { kind: 'changed', bytes: reply };
    const [state, lock, ...epochs] = reply.map((b) => b.toString());
    return {
      kind: state === '1' ? 'stale' : 'gone',
      lockHeld: lock === '0',
      snapshot: { fields: ['*', ...escaped], values: epochs, lockToken: token },
    };
  }

  /** Gives a lease back (its holder will not store); never throws. */
  async releaseLease(prefix: string, hash: string, token: string): Promise<void> {
    if (token === '') return;
    const ns = this.nsFor(prefix, hash);
    await this.guard('a lease release', () => this.client.cacheopsReleaseLease(lockKey(ns, hash), token), 0).catch(() => undefined);
  }

  /**
   * Stores unless an invalidation moved an epoch since the snapshot; true when stored.
   * `timeout` is the key's whole life in seconds (a stale-while-revalidate value's
   * window included): its invalidation structures are kept at least as long.
   */
  async store(prefix: string, hash: string, bytes: Buffer, timeout: number, deps: readonly Dependency[], snapshot: Snapshot): Promise<StoreResult> {
    // While Redis is full, stores are skipped (a probe of its own finds room again: pressure.ts).
    if (!this.full.mayStore()) {
      await this.releaseLease(prefix, hash, snapshot.lockToken);
      return 'full';
    }
    const ns = this.nsFor(prefix, hash);
    const insideout = this.options.insideout;
    // The key and argument layout of store.lua and store_insideout.lua (see their headers).
    const conjKeys: string[] = [];
    const schemesKeys: string[] = [];
    const schemes: string[] = [];
    const indexKeys: string[] = [];
    const tables = new Set<string>();
    for (const dep of deps) {
      const table = escapeKeyPart(dep.table);
      tables.add(table);
      for (const c of dep.conjs) {
        const { scheme, conj } = schemeOf(c);
        conjKeys.push(conjKey(ns, table, conj));
        schemesKeys.push(schemesKey(ns, table));
        schemes.push(scheme);
        if (!insideout) indexKeys.push(indexKey(ns, table, scheme));
      }
    }
    const head = [valueKey(ns, hash), epochsKey(ns), lockKey(ns, hash)];
    const timeoutS = Math.max(1, Math.ceil(timeout));
    const epochs = snapshot.fields.map((_, i) => snapshot.values[i] ?? '0');
    const args: (string | Buffer | number)[] = insideout
      ? [3 + tables.size + 2 * conjKeys.length, ...head, ...[...tables].map((t) => genKey(ns, t)), ...conjKeys, ...schemesKeys,
        bytes, timeoutS, snapshot.lockToken, randomBytes(8).toString('hex'), snapshot.fields.length, tables.size]
      : [3 + 3 * conjKeys.length, ...head, ...conjKeys, ...indexKeys, ...schemesKeys,
        bytes, timeoutS, snapshot.lockToken, snapshot.fields.length];
    args.push(...snapshot.fields, ...epochs, ...schemes);
    const stored = await this.guard('a cache store', async () => {
      try {
        return await (insideout ? this.client.cacheopsStoreInsideout(...args) : this.client.cacheopsStore(...args));
      } catch (error) {
        if (!isOomError(error)) throw error;
        this.full.refused(error, 'a cache store');
        return -1;
      }
    }, 0);
    // No store ends a full state (stores are sent only while it is not known full): the probe does.
    if (stored === -1) await this.releaseLease(prefix, hash, snapshot.lockToken);
    return stored === 1 ? 'stored' : stored === -1 ? 'full' : 'refused';
  }

  /**
   * Drops the values that depend on these rows (or tables), in every shard; one round trip per shard.
   * With `done`, the shard of its namespace announces it in the same script, run after the
   * other shards' (or, when no shard has it, one more call after the invalidation).
   */
  async invalidate(prefix: string, items: readonly TableInvalidation[], done?: DoneAnnouncement): Promise<number> {
    if (items.length === 0) return 0;
    // The argument layout of invalidate.lua and invalidate_insideout.lua (see their headers).
    const tables = items.map((item) => escapeKeyPart(item.table));
    const counts: number[] = [];
    const rows: string[] = [];
    for (const item of items) {
      if (item.rows === 'all') {
        counts.push(-1);
        continue;
      }
      counts.push(item.rows.length);
      // One argument per row (`f=t&g=u`, escaped): a write of many rows would otherwise send
      // two arguments per column of each, and their encoding cost more than the script.
      for (const row of item.rows) {
        let text = '';
        for (const [field, token] of row) text += `${text === '' ? '' : '&'}${escapeKeyPart(field)}=${escapeKeyPart(token)}`;
        rows.push(text);
      }
    }
    const insideout = this.options.insideout;
    const argsOf = (ns: string): (string | number)[] => {
      const keys = [epochsKey(ns), fenceKey(ns), ...tables.map((t) => schemesKey(ns, t))];
      if (insideout) keys.push(...tables.map((t) => genKey(ns, t)));
      const prefixes = tables.map((t) => conjPrefix(ns, t));
      if (!insideout) prefixes.push(...tables.map((t) => indexPrefix(ns, t)));
      const announced = done?.ns === ns ? done : undefined;
      if (announced) keys.push(...announced.marks);
      const args: (string | number)[] = [keys.length, ...keys, tables.length, ...tables, ...counts, ...prefixes, ...rows];
      if (announced) args.push(announced.ttlMs, announced.channel, announced.ids);
      return args;
    };
    const announcing = done === undefined ? -1 : [...Array(this.shards).keys()].find((shard) => namespace(prefix, shard) === done.ns) ?? -1;
    const run = (shard: number): Promise<number> => {
      const args = argsOf(namespace(prefix, shard));
      return this.allowOom((bare) => (insideout
        ? (bare ? this.client.cacheopsInvalidateInsideoutBare(...args) : this.client.cacheopsInvalidateInsideout(...args))
        : (bare ? this.client.cacheopsInvalidateBare(...args) : this.client.cacheopsInvalidate(...args))));
    };
    // Invalidation failures are never silent when not degrading: a lost invalidation is a stale read.
    return this.guard(INVALIDATION, async () => {
      const calls: Promise<number>[] = [];
      for (let shard = 0; shard < this.shards; shard += 1) if (shard !== announcing) calls.push(run(shard));
      let deleted = (await Promise.all(calls)).reduce((a, b) => a + b, 0);
      // The announcing shard runs once every other shard's invalidation has: on a cluster the
      // shards' scripts run on several masters, and an announcement sent beside them reached
      // the writers of other processes before the invalidations of the other masters had run
      // (always, on a private 3-master cluster: test/stream/stream-writes-cluster.test.ts), so a
      // read right after a resolved write could find a value not deleted yet (a script
      // retried on TRYAGAIN during a slot migration, or on a reconnection, widens it to
      // 100 ms and more). The price is one more round trip on a cluster, for the consumer only.
      if (announcing >= 0) deleted += await run(announcing);
      else if (done) await this.announceDone(done);
      return deleted;
    }, -1);
  }

  /** Tells the writers waiting for these transactions (see DoneAnnouncement) on its own. */
  announceDone(done: DoneAnnouncement): Promise<number> {
    const args = [done.marks.length, ...done.marks, done.ttlMs, done.channel, done.ids];
    return this.allowOom((bare) => (bare ? this.client.cacheopsAnnounceDoneBare(...args) : this.client.cacheopsAnnounceDone(...args)));
  }

  /**
   * Deletes every key of the installation with this prefix (every prefix when
   * `undefined`: a prefix function), with SCAN, never KEYS. The epochs are
   * bumped first, so a value read before this call can no longer be stored
   * behind the scan's cursor. Each Redis call is bounded in time on its own.
   */
  async invalidateAll(prefix: string | undefined): Promise<number> {
    const nodes = isCluster(this.client) ? this.client.nodes('master') : [this.client];
    const pattern = prefix === undefined ? '*cacheops:{*' : allKeysPattern(prefix);
    // SCAN on every master; a page Redis did not answer ends the whole walk.
    const scanNodes = async (match: string, each: (node: (typeof nodes)[number], keys: string[]) => Promise<void>): Promise<void> => {
      for (const node of nodes) {
        const whole = await scanAll((cursor) => this.guard('invalidateAll', () => node.scan(cursor, 'MATCH', match, 'COUNT', 1000), undefined),
          async (keys) => { if (keys.length > 0) await each(node, keys); });
        if (!whole) return;
      }
    };
    if (prefix !== undefined) {
      for (let shard = 0; shard < this.shards; shard += 1) {
        const key = epochsKey(namespace(prefix, shard));
        await this.guard('invalidateAll', () => this.allowOom((bare) => (bare ? this.client.cacheopsBumpEpochBare(key) : this.client.cacheopsBumpEpoch(key))), 0);
      }
    } else {
      await scanNodes(`${pattern}}:epochs`, async (node, keys) => {
        await this.guard('invalidateAll', () => node.pipeline(keys.map((k) => ['hincrby', k, '*', 1])).exec(), null);
      });
    }
    let deleted = 0;
    const unlink = async (node: (typeof nodes)[number], keys: string[]): Promise<void> => {
      // The epochs only move; the change stream's lease and position are not cached data: deleting them
      // would stop a running consumer and restart it at the binlog's end, its waiting writes unannounced.
      const victims = keys.filter((k) => !k.endsWith('}:epochs') && !isStreamKey(k));
      if (victims.length === 0) return;
      // One round trip per SCAN page; one UNLINK per key, since on a cluster a page spans slots.
      const replies = await this.guard('invalidateAll', () => node.pipeline(victims.map((k) => ['unlink', k])).exec(), null);
      for (const [error, n] of replies ?? []) if (!error) deleted += Number(n);
    };
    await scanNodes(pattern, unlink);
    // A value stored while that scan ran (after the epoch bump) can keep its value key behind
    // the cursor while its conj/index/scheme entries ahead of it are deleted: no write could
    // invalidate it any more. A second pass over the value keys alone drops every value that
    // existed before it began; values stored during it are registered after the first pass.
    await scanNodes(`${pattern}}:q:*`, unlink);
    return deleted;
  }

  async getSimple(prefix: string, key: string): Promise<Buffer | null | undefined> {
    const ns = this.nsFor(prefix, hashText(key));
    return this.guard<Buffer | null | undefined>('a cache read', () => this.client.getBuffer(simpleKey(ns, key)), undefined);
  }

  /** Stores a plain key/value entry; false when it was not (Redis full or out while degrading). */
  async setSimple(prefix: string, key: string, bytes: Buffer, timeout: number): Promise<boolean> {
    if (!this.full.mayStore()) return false;
    const ns = this.nsFor(prefix, hashText(key));
    const reply = await this.guard<string | null>('a cache write', () => this.client.set(simpleKey(ns, key), bytes, 'EX', Math.max(1, Math.ceil(timeout))), null);
    return reply === 'OK';
  }

  async deleteSimple(prefix: string, key: string): Promise<boolean> {
    const ns = this.nsFor(prefix, hashText(key));
    return (await this.guard('a cache delete', () => this.client.del(simpleKey(ns, key)), 0)) > 0;
  }

  /** Deletes one value by hash (function caches' `.invalidate`). */
  async deleteValue(prefix: string, hash: string): Promise<boolean> {
    const ns = this.nsFor(prefix, hash);
    return (await this.guard('a cache delete', () => this.client.del(valueKey(ns, hash)), 0)) > 0;
  }
}
