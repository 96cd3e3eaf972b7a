/**
 * Runs a fast-check property in rounds until enough steps ran: each round has
 * its own seed (seed + round) and as many runs as the remaining steps need.
 * With `seeds` above 1, at least that many rounds run, each of `target / seeds` steps.
 * With a replay path it runs once. A failure shows the property's own error
 * (fast-check keeps it as `cause`): what was stale.
 */
import fc from 'fast-check';

export interface Rounds {
  readonly label: string;
  /** Steps to reach, and how many ran so far (the property counts them). */
  readonly target: number;
  readonly steps: () => number;
  readonly expectedStepsPerRun: number;
  readonly seed: number;
  readonly path: string | undefined;
  readonly log: (message: string) => void;
  /** Distinct seeds to run at least (default 1). */
  readonly seeds?: number;
}

export async function assertInRounds<Ts extends [unknown, ...unknown[]]>(property: fc.IAsyncProperty<Ts>, r: Rounds): Promise<void> {
  const seeds = Math.max(1, r.seeds ?? 1);
  for (let round = 0; r.steps() < r.target || round < seeds; round += 1) {
    const remaining = Math.max(r.target - r.steps(), 0);
    const numRuns = Math.max(1, Math.ceil((seeds > 1 ? Math.min(remaining || r.target / seeds, r.target / seeds) : remaining) / r.expectedStepsPerRun));
    r.log(`${r.label}: round ${round}, seed ${r.seed + round}, ${numRuns} runs`);
    try {
      await fc.assert(property, { seed: r.seed + round, numRuns, ...(r.path ? { path: r.path } : {}) });
    } catch (error) {
      const cause = (error as { cause?: unknown }).cause;
      throw new Error(`${(error as Error).message}\n\n${cause instanceof Error ? cause.message : String(cause)}`);
    }
    if (r.path) break;
  }
}
