/**
 * What a select depends on: for its own model, the DNF of its where; for
 * every included model (and belongsToMany through model), the DNF of the
 * include's where; and "any row" of every other known table its SQL names
 * (subqueries and literals may read them). A write to any of those tables
 * invalidates the value when one of its rows' states matches a conjunction.
 */
import { Utils, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import type { Dependency } from '../core/cache-store';
import { FALSE, TRUE, and, isPlainObject, or, whereToDnf, type Dnf } from '../core/tree';
import { joinKeysOf, restrictToJoinedRows, type JoinKey } from './join-keys';
import { modelsNamedIn, tableOf, treeContext } from '../core/tables';

export interface DependencyContext {
  readonly sequelize: Sequelize;
  readonly dialect: string;
  readonly maxInListLength: number;
  /** false when caching is forbidden for a model (profile null). */
  readonly mayCache: (model: ModelStatic<Model>) => boolean;
}

interface IncludeLike {
  readonly model?: ModelStatic<Model>;
  readonly where?: unknown;
  readonly separate?: boolean;
  readonly include?: readonly IncludeLike[];
  readonly through?: { readonly model?: ModelStatic<Model>; readonly where?: unknown };
}

/** An included model's dependency, restricted by join keys once the rows are known. */
interface IncludeDependency {
  readonly model: ModelStatic<Model>;
  readonly dnf: Dnf;
  /** Present when only rows joined to the returned parents matter (see join-keys.ts). */
  readonly join?: JoinKey;
}

export interface PendingDependencies {
  /** The dependencies before the rows are known (for the epoch snapshot and uncached paths). */
  withTablesOf(sql: string): FinalDependencies | undefined;
}

export interface FinalDependencies {
  readonly deps: Dependency[];
  /** The same, narrowed by the join keys found in a result (instances, not raw rows). */
  refine(result: unknown): Dependency[];
}

/** A where that may test included tables: `'$Include.col$'` keys, or literal/col/fn/where parts. */
function mayTestIncludes(where: unknown): boolean {
  if (where instanceof Utils.SequelizeMethod) return true;
  if (Array.isArray(where)) return where.some(mayTestIncludes);
  if (!isPlainObject(where)) return false;
  return Reflect.ownKeys(where).some((k) => (typeof k === 'string' && k.startsWith('$')) || mayTestIncludes(where[k]));
}

/** An order naming only the model's own columns (`'col'`, `['col', 'DESC']`). */
function ordersByOwnColumns(order: unknown): boolean {
  if (order === undefined || order === null) return true;
  if (!Array.isArray(order)) return false;
  const own = (x: unknown) => typeof x === 'string' && !x.includes('.') && !x.startsWith('$');
  return order.every((item) => own(item) || (Array.isArray(item) && item.length <= 2 && own(item[0]) && (item.length === 1 || typeof item[1] === 'string')));
}

/**
 * Join-key narrowing assumes included rows never decide which parents are
 * returned. Besides required includes (join-keys.ts), they do when the
 * parents' where or having tests them, or when a limited select is ordered
 * by them.
 */
function parentsMayDependOnIncludes(options: { where?: unknown; having?: unknown; order?: unknown; limit?: unknown; offset?: unknown }): boolean {
  if (options.having !== undefined || mayTestIncludes(options.where)) return true;
  const paged = options.limit !== undefined && options.limit !== null || Boolean(options.offset);
  return paged && !ordersByOwnColumns(options.order);
}

/**
 * The dependencies of a select, or undefined when it must not be cached.
 * Call it before generating the SQL: the generator replaces `options.where`
 * with its SQL text. Then `withTablesOf(sql)` adds the tables the SQL names.
 */
export function selectDependencies(
  ctx: DependencyContext,
  model: ModelStatic<Model>,
  options: { where?: unknown; include?: readonly IncludeLike[]; raw?: boolean; having?: unknown; order?: unknown; limit?: unknown; offset?: unknown },
): PendingDependencies | undefined {
  const fixed = new Map<string, Dnf>();
  const joined: IncludeDependency[] = [];
  let forbidden = false;
  const dnfOf = (m: ModelStatic<Model>, where: unknown): Dnf => {
    if (!ctx.mayCache(m)) forbidden = true;
    return whereToDnf(where, treeContext(m, ctx.dialect, ctx.maxInListLength));
  };
  const addFixed = (m: ModelStatic<Model>, dnf: Dnf): void => {
    fixed.set(tableOf(m), or(fixed.get(tableOf(m)) ?? FALSE, dnf));
  };
  addFixed(model, dnfOf(model, options.where));
  const noNarrowing = options.raw === true || parentsMayDependOnIncludes(options);
  // Narrowing a child is sound whatever its parents' dependencies are: any change to
  // which parents are returned already invalidates through the parents' own tables.
  const walk = (includes: readonly IncludeLike[] | undefined, path: readonly string[], through?: ModelStatic<Model>): void => {
    for (const inc of includes ?? []) {
      // Sequelize lists a belongsToMany's through model again among its include's children:
      // it is already counted (and narrowed) as the parent's `through`.
      if (through && inc.model === through) continue;
      if (inc.separate || !inc.model) continue; // a separate include runs (and caches) its own query
      const dnf = dnfOf(inc.model, inc.where);
      const keys = noNarrowing ? undefined : joinKeysOf(inc as Parameters<typeof joinKeysOf>[0], path);
      if (keys?.target) joined.push({ model: inc.model, dnf, join: keys.target });
      else addFixed(inc.model, dnf);
      if (inc.through?.model) {
        const throughDnf = dnfOf(inc.through.model, inc.through.where);
        if (keys?.through) joined.push({ model: inc.through.model, dnf: throughDnf, join: keys.through });
        else addFixed(inc.through.model, throughDnf);
      }
      const as = (inc as { as?: string }).as;
      if (as) walk(inc.include, [...path, as], inc.through?.model);
      else walk(inc.include, path, inc.through?.model); // unknown nesting: children get no narrowing below (joinKeysOf needs an association)
    }
  };
  walk(options.include, []);
  if (forbidden) return undefined;
  return {
    withTablesOf(sql: string): FinalDependencies | undefined {
      const all = new Map(fixed);
      for (const j of joined) all.set(tableOf(j.model), or(all.get(tableOf(j.model)) ?? FALSE, j.dnf));
      for (const m of modelsNamedIn(ctx.sequelize, sql)) {
        const table = tableOf(m);
        if (all.has(table)) continue;
        if (!ctx.mayCache(m)) return undefined;
        all.set(table, TRUE);
        fixed.set(table, TRUE);
      }
      const toList = (map: Map<string, Dnf>): Dependency[] => [...map].map(([table, conjs]) => ({ table, conjs }));
      return {
        deps: toList(all),
        refine(result: unknown): Dependency[] {
          if (joined.length === 0) return toList(all);
          const narrowed = new Map(fixed);
          for (const j of joined) {
            const dnf = and(j.dnf, restrictToJoinedRows(j.model, j.join!, result, ctx));
            narrowed.set(tableOf(j.model), or(narrowed.get(tableOf(j.model)) ?? FALSE, dnf));
          }
          return toList(narrowed);
        },
      };
    },
  };
}
