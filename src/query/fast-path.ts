/**
 * The fast path: a hit without Sequelize's find machinery.
 *
 * A hit through QueryInterface.select (intercept.ts) still pays for all of
 * findAll's option processing (cloning, scopes, include expansion and
 * validation) and for generating the SQL the key is made from: together about
 * as much as the Redis GET and the build of the instances. For a call whose
 * options it can fingerprint (fingerprint.ts), the fast path remembers the
 * select the first such call prepared (SQL, key, the processed options the
 * result is built with) and serves later calls with the same fingerprint from
 * it: fingerprint, GET, build. On a miss it runs the remembered SQL, as the
 * normal path would.
 *
 * It steps aside, leaving the call to Sequelize, whenever the result could
 * differ from the normal path's: find hooks (they may change the options or the
 * result), a transaction (explicit or CLS), locks, separate includes (their own
 * queries follow the select), models without a primary key (findAll records
 * their where for `instance.where()`), and any option it does not know. Model
 * definitions are assumed settled once queried; defining a model, an
 * association, a scope or changing attributes forgets everything remembered.
 *
 * count, aggregate (max, min, sum) and findAndCountAll (fast-aggregate.ts) and
 * the association methods that read (fast-association.ts) have fast paths of
 * their own on the same memo and the same rules; `extended = false` turns
 * just those off.
 */
import { EmptyResultError, type Sequelize } from 'sequelize';
import type { CacheopsCore, ReadDecision } from '../core/cacheops-core';
import { CAPTURE, SelectCapture, carriesCapture, type RawPrepared } from './capture';
import { isPlainObject } from '../core/tree';
import { findFingerprint } from './fingerprint';
import { parseFindOption, type ParsedFindOption } from '../core/find-option';
import { rawResult, readPrepared, type PreparedSelect } from './intercept';
import { FIND_HOOKS, hasHooks, type AnyModel } from './hooks';
import { fastAggregate, fastCount, fastFindAndCountAll } from './fast-aggregate';
import { patchAssociations } from './fast-association';
import { LruMap } from '../core/lru';
import { clsOf, modelStatics } from '../core/sequelize-internals';


/** Bumped by every change to model definitions; entries of an older generation are not used. */
let generation = 0;

/** What one fingerprint remembers: the selects its first call prepared. */
export interface Entry {
  readonly generation: number;
  /** The call's select (findAll's); undefined when it made none or one the fast path cannot replay. */
  readonly select: PreparedSelect | undefined;
  /** The call's raw select (count's, aggregate's). */
  readonly raw: RawPrepared | undefined;
  /**
   * The call's `cacheops` option, parsed once: the fingerprint encodes it exactly,
   * and a call whose option is bad throws before its select is remembered.
   */
  readonly option: ParsedFindOption;
}

export type FindOptions = Record<PropertyKey, unknown> & {
  transaction?: unknown;
  lock?: unknown;
  hooks?: unknown;
  cacheops?: unknown;
  logging?: unknown;
  benchmark?: unknown;
  rejectOnEmpty?: unknown;
};


interface Include { readonly separate?: boolean; readonly include?: readonly Include[] }

function hasSeparate(includes: readonly Include[] | undefined): boolean {
  return (includes ?? []).some((inc) => inc.separate === true || hasSeparate(inc.include));
}

/** As findAll tests its result for rejectOnEmpty (lodash's isEmpty on null, arrays, instances and raw rows). */
function isEmptyResult(result: unknown): boolean {
  if (result === null || result === undefined) return true;
  if (Array.isArray(result)) return result.length === 0;
  return typeof result === 'object' && Object.keys(result).length === 0;
}

export class FastPath {
  /** Remembered selects by fingerprint; the least recently used go first past `memory.fastPath`. */
  private readonly memo: LruMap<string, Entry>;
  /**
   * Off: count, aggregate (max, min, sum), findAndCountAll and the association
   * methods take the normal path (findAll, findOne and findByPk keep theirs);
   * the benchmark compares the two.
   */
  extended = true;

  constructor(readonly core: CacheopsCore) {
    this.memo = new LruMap(core.config.memory.fastPath);
  }

  /** Selects remembered. */
  get size(): number {
    return this.memo.size;
  }

  /**
   * Whether a call may use the fast path at all (before fingerprinting it):
   * not for a transaction (explicit or CLS), a lock, `cacheops: false`, a
   * call carrying another's capture, or a model with any of `hooks` (unless
   * the call turns hooks off) or without a primary key.
   */
  eligible(model: AnyModel, options: FindOptions | undefined, hooks: readonly string[] = FIND_HOOKS): boolean {
    const core = this.core;
    if (!core.config.enabled || core.closed) return false;
    if (options?.transaction || options?.lock || options?.cacheops === false) return false;
    if (options !== undefined && carriesCapture(options)) return false;
    if (options?.hooks !== false && hasHooks(model, hooks)) return false;
    if (options?.transaction === undefined) {
      const cls = clsOf(model.sequelize);
      if (cls?.get('transaction')) return false;
    }
    return model.primaryKeyAttributes.length > 0;
  }

  /** The entry of a fingerprint, if it is of the current generation. */
  entry(fingerprint: string): Entry | undefined {
    const entry = this.memo.get(fingerprint);
    return entry && entry.generation === generation ? entry : undefined;
  }

  /**
   * Runs a call the normal way with a capture in its options, and remembers
   * the selects it prepared under the fingerprint (also when the call throws
   * after preparing them: rejectOnEmpty).
   */
  async capture<T>(fingerprint: string, model: AnyModel, options: FindOptions | undefined, call: (options: FindOptions) => Promise<T>): Promise<T> {
    const at = generation;
    const capture = new SelectCapture(model);
    try {
      return await call({ ...options, [CAPTURE]: capture });
    } finally {
      if ((capture.select || capture.raw) && at === generation) this.remember(fingerprint, at, capture, options?.cacheops);
    }
  }

  /**
   * Runs a find call: from a remembered select when there is one, else the
   * normal way (`call`), remembering the select it prepares.
   */
  find(
    kind: string,
    model: AnyModel,
    options: unknown,
    param: unknown,
    call: (options: unknown) => Promise<unknown>,
  ): Promise<unknown> {
    if (options !== undefined && !isPlainObject(options)) return call(options);
    if (!this.eligible(model, options)) return call(options);
    const fingerprint = findFingerprint(kind, model, options, param);
    if (fingerprint === undefined) return call(options);
    const entry = this.entry(fingerprint);
    if (!entry) return this.capture(fingerprint, model, options, call);
    if (!entry.select) return call(options);
    return this.readRemembered(model, options, entry.select, entry.option, call);
  }

  /** A remembered select read through the cache, built with the call's model; rejectOnEmpty as findAll applies it. */
  async readRemembered(
    model: AnyModel, options: FindOptions | undefined, prepared: PreparedSelect, option: ParsedFindOption, call: (options: FindOptions | undefined) => Promise<unknown>,
    // No transaction and no lock here (eligible() sent those calls the normal way). A caller that already decided passes its decision.
    decision: ReadDecision | undefined = this.core.planParsed(model, prepared.op, option, {}),
  ): Promise<unknown> {
    if (!decision) return call(options);
    // The remembered options build the result; a miss runs with this call's model and logging.
    const run = (sql: string): Promise<unknown> => model.sequelize.query(sql, { ...prepared.options, model, logging: options?.logging, benchmark: options?.benchmark } as never);
    const result = await readPrepared(this.core, prepared, decision, model, run);
    const rejectOnEmpty = options && Object.prototype.hasOwnProperty.call(options, 'rejectOnEmpty') ? options.rejectOnEmpty : model.options.rejectOnEmpty;
    if (rejectOnEmpty && isEmptyResult(result)) {
      if (typeof rejectOnEmpty === 'function') throw new (rejectOnEmpty as new () => Error)();
      if (typeof rejectOnEmpty === 'object') throw rejectOnEmpty;
      throw new EmptyResultError('');
    }
    return result;
  }

  /** A remembered raw select (count, aggregate) read through the cache: what rawSelect returns. */
  async readRememberedRaw(
    model: AnyModel, options: FindOptions | undefined, raw: RawPrepared, option: ParsedFindOption, call: (options: FindOptions | undefined) => Promise<unknown>,
    decision: ReadDecision | undefined = this.core.planParsed(model, raw.prepared.op, option, {}),
  ): Promise<unknown> {
    const { prepared, shape } = raw;
    if (!decision) return call(options);
    // As rawSelect runs it: the remembered options, no model; this call's logging.
    const run = (sql: string): Promise<unknown> => model.sequelize.query(sql, { ...prepared.options, logging: options?.logging, benchmark: options?.benchmark } as never);
    return rawResult(await readPrepared(this.core, prepared, decision, model, run), shape);
  }

  private remember(fingerprint: string, at: number, capture: SelectCapture, cacheops: unknown): void {
    // The selects are offered after planRead accepted this very option, so parsing cannot fail here.
    const option = parseFindOption(cacheops);
    const select = capture.select;
    const usable = select === undefined || !hasSeparate(select.options.include as readonly Include[] | undefined);
    this.memo.set(fingerprint, { generation: at, select: usable ? select : undefined, raw: usable ? capture.raw : undefined, option });
  }
}

const fastPaths = new WeakMap<Sequelize, FastPath>();

let patched = false;

/** Patches Model's find methods (once per process) and registers this installation's fast path. */
export function installFastPath(core: CacheopsCore): FastPath {
  const fast = new FastPath(core);
  fastPaths.set(core.sequelize, fast);
  core.fastPath = fast;
  if (patched) return fast;
  patched = true;
  const M = modelStatics();
  const findAll = M['findAll']!;
  const findOne = M['findOne']!;
  const findByPk = M['findByPk']!;
  M['findAll'] = function (this: AnyModel, options?: unknown) {
    const f = fastPaths.get(this.sequelize);
    if (!f) return findAll.call(this, options);
    return f.find('A', this, options, undefined, (o) => findAll.call(this, o) as Promise<unknown>);
  };
  M['findOne'] = function (this: AnyModel, options?: unknown) {
    const f = fastPaths.get(this.sequelize);
    if (!f) return findOne.call(this, options);
    return f.find('O', this, options, undefined, (o) => findOne.call(this, o) as Promise<unknown>);
  };
  M['findByPk'] = function (this: AnyModel, param?: unknown, options?: unknown) {
    const f = fastPaths.get(this.sequelize);
    const simple = typeof param === 'number' || typeof param === 'string' || typeof param === 'bigint' || Buffer.isBuffer(param);
    if (!f || !simple) return findByPk.call(this, param, options);
    return f.find('P', this, options, param, (o) => findByPk.call(this, param, o) as Promise<unknown>);
  };
  const count = M['count']!;
  const aggregate = M['aggregate']!;
  const findAndCountAll = M['findAndCountAll']!;
  M['count'] = function (this: AnyModel, options?: unknown) {
    const f = fastPaths.get(this.sequelize);
    if (!f) return count.call(this, options);
    return fastCount(f, this, options, (o) => count.call(this, o) as Promise<unknown>);
  };
  M['aggregate'] = function (this: AnyModel, field?: unknown, fn?: unknown, options?: unknown) {
    const f = fastPaths.get(this.sequelize);
    if (!f) return aggregate.call(this, field, fn, options);
    return fastAggregate(f, this, field, fn, options, (o) => aggregate.call(this, field, fn, o) as Promise<unknown>);
  };
  M['findAndCountAll'] = function (this: AnyModel, options?: unknown) {
    const f = fastPaths.get(this.sequelize);
    if (!f) return findAndCountAll.call(this, options);
    return fastFindAndCountAll(f, this, options, (o) => findAndCountAll.call(this, o) as Promise<unknown>);
  };
  patchAssociations((a) => fastPaths.get(a.target.sequelize));
  // Whatever changes how a model's SQL is generated starts a new generation.
  for (const name of ['init', 'hasMany', 'hasOne', 'belongsTo', 'belongsToMany', 'removeAttribute', 'refreshAttributes', 'addScope']) {
    const original = M[name]!;
    M[name] = function (this: unknown, ...args: unknown[]) {
      generation += 1;
      try {
        return original.apply(this, args);
      } finally {
        generation += 1;
      }
    };
  }
  return fast;
}
