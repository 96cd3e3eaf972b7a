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
 */
import { EmptyResultError, Model, type ModelStatic, type Sequelize } from 'sequelize';
import type { CacheopsCore } from '../cacheops';
import { CAPTURE, SelectCapture } from './capture';
import { isPlainObject } from '../tree';
import { findFingerprint } from './fingerprint';
import { parseFindOption, type ParsedFindOption } from '../find-option';
import { readPrepared, type PreparedSelect } from './intercept';

const FIND_HOOKS = ['beforeFind', 'beforeFindAfterExpandIncludeAll', 'beforeFindAfterOptions', 'afterFind'] as const;

/** How many prepared selects an installation keeps (the oldest go first). */
const CAPACITY = 5000;

/** Bumped by every change to model definitions; entries of an older generation are not used. */
let generation = 0;

interface Entry {
  readonly generation: number;
  /** undefined: this call shape always takes the normal path. */
  readonly prepared: PreparedSelect | undefined;
  /**
   * The call's `cacheops` option, parsed once: the fingerprint encodes it exactly,
   * and a call whose option is bad throws before its select is remembered.
   */
  readonly option: ParsedFindOption;
}

type FindOptions = Record<PropertyKey, unknown> & {
  transaction?: unknown;
  lock?: unknown;
  hooks?: unknown;
  cacheops?: unknown;
  logging?: unknown;
  benchmark?: unknown;
  rejectOnEmpty?: unknown;
};

type AnyModel = ModelStatic<Model> & {
  options: { hooks?: Record<string, unknown[] | undefined>; rejectOnEmpty?: unknown };
  sequelize: Sequelize & { options: { hooks?: Record<string, unknown[] | undefined> } };
};

interface Include { readonly separate?: boolean; readonly include?: readonly Include[] }

function hasSeparate(includes: readonly Include[] | undefined): boolean {
  return (includes ?? []).some((inc) => inc.separate === true || hasSeparate(inc.include));
}

function hasFindHooks(model: AnyModel): boolean {
  const own = model.options.hooks;
  const global = model.sequelize.options.hooks;
  for (const h of FIND_HOOKS) if ((own?.[h]?.length ?? 0) > 0 || (global?.[h]?.length ?? 0) > 0) return true;
  return false;
}

/** As findAll tests its result for rejectOnEmpty (lodash's isEmpty on null, arrays, instances and raw rows). */
function isEmptyResult(result: unknown): boolean {
  if (result === null || result === undefined) return true;
  if (Array.isArray(result)) return result.length === 0;
  return typeof result === 'object' && Object.keys(result).length === 0;
}

export class FastPath {
  private readonly memo = new Map<string, Entry>();
  /** Off: every call takes the normal path (the benchmark compares the two). */
  enabled = true;
  /** Calls served from a remembered select (hits and misses), for tests and the benchmark. */
  served = 0;

  constructor(private readonly core: CacheopsCore) {}

  /** Whether a call may use the fast path at all (before fingerprinting it). */
  private eligible(model: AnyModel, options: FindOptions | undefined): boolean {
    const core = this.core;
    if (!this.enabled || !core.config.enabled || core.closed) return false;
    if (options?.transaction || options?.lock || options?.cacheops === false) return false;
    if (options?.hooks !== false && hasFindHooks(model)) return false;
    if (options?.transaction === undefined) {
      const cls = (model.sequelize.constructor as { _cls?: { get(key: string): unknown } })._cls;
      if (cls?.get('transaction')) return false;
    }
    return model.primaryKeyAttributes.length > 0;
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
    const entry = this.memo.get(fingerprint);
    if (!entry || entry.generation !== generation) {
      const at = generation;
      const capture = new SelectCapture(model, (prepared) => this.remember(fingerprint, at, prepared, options?.cacheops));
      return call({ ...options, [CAPTURE]: capture });
    }
    if (!entry.prepared) return call(options);
    return this.read(model, options, entry.prepared, entry.option, call);
  }

  private async read(model: AnyModel, options: FindOptions | undefined, prepared: PreparedSelect, option: ParsedFindOption, call: (options: unknown) => Promise<unknown>): Promise<unknown> {
    // No transaction and no lock here (eligible() sent those calls the normal way).
    const plan = this.core.planParsed(model, prepared.op, option, {});
    if (!plan) return call(options);
    this.served += 1;
    // The remembered options build the result; a miss runs with this call's model and logging.
    const run = (sql: string): Promise<unknown> => model.sequelize.query(sql, { ...prepared.options, model, logging: options?.logging, benchmark: options?.benchmark } as never);
    const result = await readPrepared(this.core, prepared, plan, model, run);
    const rejectOnEmpty = options && Object.prototype.hasOwnProperty.call(options, 'rejectOnEmpty') ? options.rejectOnEmpty : model.options.rejectOnEmpty;
    if (rejectOnEmpty && isEmptyResult(result)) {
      if (typeof rejectOnEmpty === 'function') throw new (rejectOnEmpty as new () => Error)();
      if (typeof rejectOnEmpty === 'object') throw rejectOnEmpty;
      throw new EmptyResultError('');
    }
    return result;
  }

  private remember(fingerprint: string, at: number, prepared: PreparedSelect, cacheops: unknown): void {
    if (at !== generation) return;
    // The select is offered after planRead accepted this very option, so parsing cannot fail here.
    const option = parseFindOption(cacheops);
    const usable = !hasSeparate(prepared.options.include as readonly Include[] | undefined);
    if (this.memo.size >= CAPACITY && !this.memo.has(fingerprint)) {
      const oldest = this.memo.keys().next();
      if (!oldest.done) this.memo.delete(oldest.value);
    }
    this.memo.set(fingerprint, { generation: at, prepared: usable ? prepared : undefined, option });
  }
}

const fastPaths = new WeakMap<Sequelize, FastPath>();

type Static = Record<string, (...args: unknown[]) => unknown>;

let patched = false;

/** Patches Model's find methods (once per process) and registers this installation's fast path. */
export function installFastPath(core: CacheopsCore): FastPath {
  const fast = new FastPath(core);
  fastPaths.set(core.sequelize, fast);
  core.fastPath = fast;
  if (patched) return fast;
  patched = true;
  const M = Model as unknown as Static;
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
