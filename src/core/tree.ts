/**
 * A Sequelize `where` tree -> disjunctive normal form over equality tokens.
 *
 * The result is a list of conjunctions (OR of ANDs); each conjunction maps
 * attribute names to tokens (see tokens.ts). A row can only be in the query's
 * result if it matches one of them, so a write needs to invalidate the query
 * only when one of the row's states matches one. Every condition that is not
 * an equality, IN (up to a length), or IS NULL becomes "true" (no constraint):
 * the DNF is always implied by the real condition, never stricter.
 *
 * `[]` is "false" (no row can match); `[{}]` is "true" (any row may match).
 */
import { Op, Utils } from 'sequelize';
import { tokenKind, tokenOf, type ColumnLike, type TokenKind } from './tokens';

export type Conj = ReadonlyMap<string, string>;
export type Dnf = readonly Conj[];

export const TRUE: Dnf = [new Map()];
export const FALSE: Dnf = [];

/** Past this many conjunctions a DNF collapses to "true" (keeps keys and scripts small). */
const MAX_CONJS = 64;

export interface TreeContext {
  /** Attribute name -> column definition; field names are accepted as aliases. */
  readonly attributes: Readonly<Record<string, ColumnLike & { field?: string }>>;
  readonly dialect: string;
  readonly maxInListLength: number;
}

function isTrue(d: Dnf): boolean {
  return d.some((c) => c.size === 0);
}

export function or(a: Dnf, b: Dnf): Dnf {
  if (isTrue(a) || isTrue(b)) return TRUE;
  const all = [...a, ...b];
  return all.length > MAX_CONJS ? TRUE : all;
}

export function and(a: Dnf, b: Dnf): Dnf {
  if (a.length === 0 || b.length === 0) return FALSE;
  if (isTrue(a) && a.length === 1) return b;
  if (isTrue(b) && b.length === 1) return a;
  if (a.length * b.length > MAX_CONJS) {
    // Too many combinations: keep the smaller side alone, which is implied by the AND.
    return a.length <= b.length ? a : b;
  }
  const out: Conj[] = [];
  for (const x of a) {
    for (const y of b) {
      const merged = new Map(x);
      let ok = true;
      for (const [k, v] of y) {
        const prev = merged.get(k);
        if (prev !== undefined && prev !== v) {
          ok = false; // a = 1 AND a = 2: no row matches
          break;
        }
        merged.set(k, v);
      }
      if (ok) out.push(merged);
    }
  }
  return out;
}

function isSequelizeMethod(v: unknown): boolean {
  return v instanceof Utils.SequelizeMethod;
}

export function isPlainObject(v: unknown): v is Record<string | symbol, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function entries(obj: Record<string | symbol, unknown>): [string | symbol, unknown][] {
  const out: [string | symbol, unknown][] = Object.entries(obj);
  for (const s of Object.getOwnPropertySymbols(obj)) out.push([s, obj[s]]);
  return out;
}

/** The members of an `Op.and` / `Op.or` group: an array as is, an object as one entry each. */
function groupParts(group: unknown): unknown[] {
  if (Array.isArray(group)) return group;
  return isPlainObject(group) ? entries(group).map(([k, v]) => ({ [k]: v })) : [];
}

function resolveAttribute(ctx: TreeContext, key: string): { name: string; kind: TokenKind } | undefined {
  const direct = ctx.attributes[key];
  if (direct) return { name: key, kind: tokenKind(direct, ctx.dialect) };
  for (const [name, attr] of Object.entries(ctx.attributes)) {
    if (attr.field === key) return { name, kind: tokenKind(attr, ctx.dialect) };
  }
  return undefined;
}

function single(name: string, kind: TokenKind, value: unknown): Dnf {
  if (isSequelizeMethod(value) || value === undefined) return TRUE;
  const token = tokenOf(kind, value);
  return token === undefined ? TRUE : [new Map([[name, token]])];
}

function inList(ctx: TreeContext, name: string, kind: TokenKind, values: unknown): Dnf {
  if (!Array.isArray(values)) return TRUE;
  if (values.length === 0) return FALSE;
  if (values.length > ctx.maxInListLength) return TRUE;
  let out: Dnf = FALSE;
  for (const v of values) {
    // `col IN (NULL)` matches nothing in SQL; it can be skipped.
    if (v === null) continue;
    const d = single(name, kind, v);
    if (isTrue(d)) return TRUE;
    out = [...out, ...d];
  }
  return out;
}

function attributeCondition(ctx: TreeContext, name: string, kind: TokenKind, value: unknown): Dnf {
  if (value === null) return single(name, kind, null);
  if (Array.isArray(value)) return inList(ctx, name, kind, value);
  if (!isPlainObject(value)) return single(name, kind, value);
  let result: Dnf = TRUE;
  for (const [op, operand] of entries(value)) {
    let d: Dnf;
    if (op === Op.eq) d = Array.isArray(operand) || isPlainObject(operand) ? TRUE : single(name, kind, operand);
    else if (op === Op.in) d = inList(ctx, name, kind, operand);
    else if (op === Op.is) d = operand === null ? single(name, kind, null) : TRUE;
    else if (op === Op.and) {
      const parts = groupParts(operand);
      d = parts.reduce<Dnf>((acc, p) => and(acc, attributeCondition(ctx, name, kind, p)), TRUE);
    } else if (op === Op.or) {
      const parts = groupParts(operand);
      d = parts.length === 0 ? TRUE : parts.reduce<Dnf>((acc, p) => or(acc, attributeCondition(ctx, name, kind, p)), FALSE);
    } else d = TRUE; // ranges, like, ne, not, JSON paths, ...
    result = and(result, d);
  }
  return result;
}

/** The DNF of a where tree (see the module comment). */
export function whereToDnf(where: unknown, ctx: TreeContext): Dnf {
  if (where === undefined || where === null) return TRUE;
  if (Array.isArray(where)) {
    return where.reduce<Dnf>((acc, w) => and(acc, whereToDnf(w, ctx)), TRUE);
  }
  if (!isPlainObject(where)) return TRUE; // literal, fn, sequelize.where(...), strings
  let result: Dnf = TRUE;
  for (const [key, value] of entries(where)) {
    let d: Dnf;
    if (key === Op.and) {
      d = Array.isArray(value) ? whereToDnf(value, ctx) : whereToDnf(value, ctx);
    } else if (key === Op.or) {
      const parts = groupParts(value);
      d = parts.length === 0 ? TRUE : parts.reduce<Dnf>((acc, p) => or(acc, whereToDnf(p, ctx)), FALSE);
    } else if (key === Op.not) {
      d = negatedWhere(value, ctx);
    } else if (typeof key === 'symbol') {
      d = TRUE; // anything else: conservative
    } else if (key.startsWith('$') || key.includes('.') || key.includes('->')) {
      d = TRUE; // conditions on included models or JSON paths
    } else {
      const attr = resolveAttribute(ctx, key);
      d = attr === undefined || attr.kind === 'none' ? TRUE : attributeCondition(ctx, attr.name, attr.kind, value);
    }
    result = and(result, d);
    if (result.length === 0) return FALSE;
  }
  return result;
}

/**
 * The DNF of NOT(where), pushing the negation down (De Morgan). A negated
 * equality is an inequality (not granular: TRUE), but a negated inequality,
 * NOT IN or IS NOT NULL is an equality, IN or IS NULL again.
 */
function negatedWhere(where: unknown, ctx: TreeContext): Dnf {
  // Sequelize renders empty groups in ways logic does not predict (an empty AND inside an OR
  // vanishes, so NOT (OR [AND []]) is NOT (0 = 1)): under a negation they may match anything.
  if (Array.isArray(where)) return where.length === 0 ? TRUE : where.reduce<Dnf>((acc, w) => or(acc, negatedWhere(w, ctx)), FALSE);
  if (!isPlainObject(where)) return TRUE;
  let result: Dnf = FALSE;
  for (const [key, value] of entries(where)) {
    let d: Dnf;
    const parts = groupParts(value);
    if ((key === Op.and || key === Op.or) && parts.length === 0) d = TRUE;
    else if (key === Op.not) d = whereToDnf(value, ctx);
    else if (key === Op.and) d = parts.reduce<Dnf>((acc, p) => or(acc, negatedWhere(p, ctx)), FALSE);
    else if (key === Op.or) d = parts.reduce<Dnf>((acc, p) => and(acc, negatedWhere(p, ctx)), TRUE);
    else if (typeof key === 'symbol' || key.startsWith('$') || key.includes('.') || key.includes('->')) d = TRUE;
    else {
      const attr = resolveAttribute(ctx, key);
      d = attr === undefined || attr.kind === 'none' ? TRUE : negatedCondition(ctx, attr.name, attr.kind, value);
    }
    result = or(result, d);
    if (isTrue(result)) return TRUE;
  }
  // NOT ({}) alone is rendered 0 = 1, but `{}` inside an OR vanishes from it: may match anything.
  return entries(where).length === 0 ? TRUE : result;
}

function negatedCondition(ctx: TreeContext, name: string, kind: TokenKind, value: unknown): Dnf {
  if (!isPlainObject(value)) return TRUE; // NOT (a = v), NOT (a IN ...), NOT (a IS NULL)
  if (entries(value).length === 0) return TRUE; // `{ a: {} }` is rendered as an equality
  let result: Dnf = FALSE;
  for (const [op, operand] of entries(value)) {
    let d: Dnf;
    if (op === Op.ne) d = Array.isArray(operand) || isPlainObject(operand) ? TRUE : single(name, kind, operand);
    // An empty NOT IN is dropped from the SQL (so it vanishes from an enclosing group): anything.
    else if (op === Op.notIn) d = Array.isArray(operand) && operand.length === 0 ? TRUE : inList(ctx, name, kind, operand);
    else if (op === Op.not && operand === null) d = single(name, kind, null);
    else if (op === Op.and || op === Op.or) {
      const parts = groupParts(operand);
      d = parts.length === 0 ? TRUE : op === Op.and
        ? parts.reduce<Dnf>((acc, p) => or(acc, negatedCondition(ctx, name, kind, p)), FALSE)
        : parts.reduce<Dnf>((acc, p) => and(acc, negatedCondition(ctx, name, kind, p)), TRUE);
    } else d = TRUE;
    result = or(result, d);
  }
  return entries(value).length === 0 ? FALSE : result;
}

/** Tokens of a row (attribute-keyed values) for every tokenizable attribute it has. */
export function rowTokens(row: Readonly<Record<string, unknown>>, ctx: TreeContext): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, attr] of Object.entries(ctx.attributes)) {
    if (!(name in row)) continue;
    const kind = tokenKind(attr, ctx.dialect);
    if (kind === 'none') continue;
    const token = tokenOf(kind, row[name]);
    if (token !== undefined) out.set(name, token);
  }
  return out;
}
