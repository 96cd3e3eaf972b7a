/**
 * Join-key narrowing of include dependencies.
 *
 * For a non-required include (a LEFT JOIN), which parents are returned does
 * not depend on the included table; an included row shows up only attached
 * to a returned parent, through the join key. So a write to the included
 * table can change the result only when one of the row's states has its key
 * among the returned parents' keys: the include's conjunctions are ANDed
 * with `key IN (keys found in the result)`.
 *
 * Not narrowed (the include's where alone): required includes (they filter
 * parents), raw results, custom `on` joins, the target of a belongsToMany
 * (its rows are reached through the through table, which is narrowed),
 * and includes below one that was not narrowed.
 */
import type { Model, ModelStatic } from 'sequelize';
import { FALSE, TRUE, type Dnf } from '../core/tree';
import { tokenKind, tokenOf } from '../core/tokens';

export interface JoinKey {
  /** The as-path from the result's instances to the parents of this include. */
  readonly path: readonly string[];
  /** The attribute of the parents whose values are the keys. */
  readonly parentAttr: string;
  /** The attribute of the included (or through) model that must hold one of them. */
  readonly childAttr: string;
}

interface AssociationLike {
  readonly associationType?: string;
  readonly foreignKey?: string;
  readonly sourceKey?: string;
  readonly targetKey?: string;
  readonly identifierField?: string;
}

interface IncludeShape {
  readonly required?: boolean;
  readonly on?: unknown;
  readonly association?: AssociationLike;
}

/** The join keys of an include, when it can be narrowed. */
export function joinKeysOf(inc: IncludeShape, path: readonly string[]): { target?: JoinKey; through?: JoinKey } | undefined {
  const a = inc.association;
  if (!a || inc.required || inc.on || !a.foreignKey) return undefined;
  switch (a.associationType) {
    case 'BelongsTo':
      return a.targetKey ? { target: { path, parentAttr: a.foreignKey, childAttr: a.targetKey } } : undefined;
    case 'HasMany':
    case 'HasOne':
      return a.sourceKey ? { target: { path, parentAttr: a.sourceKey, childAttr: a.foreignKey } } : undefined;
    case 'BelongsToMany':
      return a.sourceKey ? { through: { path, parentAttr: a.sourceKey, childAttr: a.foreignKey } } : undefined;
    default:
      return undefined;
  }
}

function valuesAt(result: unknown, path: readonly string[]): unknown[] {
  let level: unknown[] = Array.isArray(result) ? result : result === null || result === undefined ? [] : [result];
  for (const as of path) {
    const next: unknown[] = [];
    for (const inst of level) {
      const v = (inst as { dataValues?: Record<string, unknown> } | null)?.dataValues?.[as];
      if (Array.isArray(v)) next.push(...v);
      else if (v !== null && v !== undefined) next.push(v);
    }
    level = next;
  }
  return level;
}

/** `childAttr IN (keys of the returned parents)` as a DNF; TRUE when the keys are not all known. */
export function restrictToJoinedRows(
  model: ModelStatic<Model>,
  join: JoinKey,
  result: unknown,
  ctx: { readonly dialect: string; readonly maxInListLength: number },
): Dnf {
  const attr = (model.getAttributes() as Record<string, { type: unknown }>)[join.childAttr];
  if (!attr) return TRUE;
  const kind = tokenKind(attr, ctx.dialect);
  const tokens = new Set<string>();
  for (const parent of valuesAt(result, join.path)) {
    const values = (parent as { dataValues?: Record<string, unknown> }).dataValues;
    if (!values || !(join.parentAttr in values)) return TRUE; // key not selected: cannot narrow
    const v = values[join.parentAttr];
    if (v === null) continue; // joins on NULL match nothing
    const t = tokenOf(kind, v);
    if (t === undefined) return TRUE;
    tokens.add(t);
  }
  if (tokens.size > ctx.maxInListLength) return TRUE;
  if (tokens.size === 0) return FALSE;
  return [...tokens].map((t) => new Map([[join.childAttr, t]]));
}
