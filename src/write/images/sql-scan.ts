/**
 * A small scanner for the statements Sequelize generates: finds a keyword at
 * the top level of a statement (outside quotes and parentheses), so that a
 * WHERE inside a subquery or a string literal is never taken for the
 * statement's own.
 */

/** The index of ` <keyword> ` at depth 0 outside quotes, from `from` on; -1 when absent. */
export function topLevelKeyword(sql: string, keyword: string, from = 0): number {
  const word = keyword.toUpperCase();
  let depth = 0;
  for (let i = from; i < sql.length; i += 1) {
    const c = sql[i]!;
    if (c === "'") {
      // 'it''s'; E'it\'s' (an escape string: backslashes escape)
      const escapes = i > 0 && (sql[i - 1] === 'E' || sql[i - 1] === 'e') && !/\w/.test(sql[i - 2] ?? ' ');
      for (i += 1; i < sql.length; i += 1) {
        if (escapes && sql[i] === '\\') { i += 1; continue; }
        if (sql[i] === "'") {
          if (sql[i + 1] === "'") { i += 1; continue; }
          break;
        }
      }
    } else if (c === '"' || c === '`') {
      for (i += 1; i < sql.length; i += 1) {
        if (sql[i] === c) {
          if (sql[i + 1] === c) { i += 1; continue; }
          break;
        }
      }
    } else if (c === '(') {
      depth += 1;
    } else if (c === ')') {
      depth -= 1;
      if (depth < 0) return -1;
    } else if (depth === 0 && (c === ' ' || c === '\n' || c === '\t')
      && sql.slice(i + 1, i + 1 + word.length).toUpperCase() === word && /[\s(]/.test(sql[i + 1 + word.length] ?? '')) {
      return i;
    }
  }
  return -1;
}

/** Whether quotes and parentheses of a fragment are balanced (nothing of it is cut off). */
export function balanced(fragment: string): boolean {
  return scanEnd(fragment) === 0;
}

function scanEnd(fragment: string): number {
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < fragment.length; i += 1) {
    const c = fragment[i]!;
    if (quote) {
      if (c === quote) {
        if (fragment[i + 1] === quote) i += 1;
        else quote = undefined;
      }
    } else if (c === "'" || c === '"' || c === '`') {
      quote = c;
    } else if (c === '(') {
      depth += 1;
    } else if (c === ')') {
      depth -= 1;
      if (depth < 0) return -1;
    }
  }
  return quote ? -1 : depth;
}
