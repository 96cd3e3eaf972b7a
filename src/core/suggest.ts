/**
 * "Did you mean" for a misspelt key, op, command or model name: the closest
 * known word within a small edit distance (case ignored, a swap of two
 * neighbouring letters counts as one edit), so `timout` suggests `timeout`
 * and `opz` suggests `ops`, but `bogus` suggests nothing.
 */

/** Edits (insert, delete, replace, swap of neighbours) from `a` to `b`; `limit + 1` for anything past `limit`. */
export function editDistance(a: string, b: string, limit = Number.POSITIVE_INFINITY): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  // Three rows of the optimal-string-alignment table: two before and the current one.
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const current = new Array<number>(b.length + 1).fill(0);
    current[0] = i;
    let rowMin = i;
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2]! + 1);
      current[j] = d;
      rowMin = Math.min(rowMin, d);
    }
    if (rowMin > limit) return limit + 1;
    before = previous;
    previous = current;
  }
  return Math.min(previous[b.length]!, limit + 1);
}

/** The known word closest to `word` (at most 2 edits, 1 for words of 3 letters or fewer), if any. */
export function closest(word: string, known: Iterable<string>): string | undefined {
  const lower = word.toLowerCase();
  const limit = lower.length <= 3 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of known) {
    const d = editDistance(lower, candidate.toLowerCase(), limit);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** `did you mean "timeout"? ` (with a trailing space), or '' when nothing is close. */
export function didYouMean(word: string, known: Iterable<string>): string {
  const match = closest(word, known);
  return match === undefined ? '' : `did you mean ${JSON.stringify(match)}? `;
}

/**
 * The message of an unknown name: `unknown option: did you mean "timeout"? (known: ...)`.
 * `what` names the kind and, where the error's key does not show it, the word itself.
 */
export function unknownName(what: string, word: string, known: readonly string[], label = 'known'): string {
  const hint = didYouMean(word, known).trimEnd();
  return `unknown ${what}${hint ? `: ${hint}` : ''} (${label}: ${known.join(', ')})`;
}
