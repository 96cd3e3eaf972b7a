/**
 * The cache never serves stale data (the property: differential-run.ts), with
 * cacheops's own Redis client; test/package/clients.test.ts runs it with each client
 * an application may hand in.
 *
 *   FC_STEPS  total steps per dialect (default 2000)
 *   FC_NEAR_STEPS  the same with the near cache on in two installations (default 600): steps
 *            write through one; every check also reads through the other, once its near
 *            cache has applied the invalidation messages sent so far (tracking.ts barrier)
 *   FC_SEED   seed to reproduce a run (printed on failure and in the log)
 *   FC_SEEDS  distinct seeds per dialect (default 1): FC_STEPS steps with each, seed, seed + 1, ...
 *   FC_PATH   fast-check replay path (printed on failure, with FC_SEED)
 */
import { registerDifferential } from './differential-run';

const STEPS = Number(process.env['FC_STEPS'] ?? 2000);
const NEAR_STEPS = Number(process.env['FC_NEAR_STEPS'] ?? 600);

registerDifferential({
  file: __filename,
  label: '',
  steps: (near) => (near ? NEAR_STEPS : STEPS),
  seeds: Math.max(1, Number(process.env['FC_SEEDS'] ?? 1)),
});
