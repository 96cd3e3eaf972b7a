/**
 * The never-stale differential test with the near cache on in two OS
 * processes: random writes (every write path of writes.ts/writes-assoc.ts)
 * run in this process; after each step a peer process (near-peer-worker.ts:
 * its own Sequelize and Redis connections, same database and key prefix,
 * `near: true` everywhere) waits until its near cache applied every
 * invalidation message sent so far, then runs the fixed reads, the recent
 * generated reads and the step's own read twice each through its cache.
 * Every answer must equal the same read run here with `{ cacheops: false }`.
 *
 *   FC_PROC_STEPS  steps per dialect (default 300)
 *   FC_SEED        seed to reproduce a run (printed in the log)
 *   FC_PATH        fast-check replay path (printed on failure, with FC_SEED)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { installCacheops, type Cacheops } from '../../src/index';
import { dialects, redisUrl, uniquePrefix, type Dialect } from '../helpers/env';
import { FIXED_SPECS, readSpecArb, runSpec, specLabel, type PeerConfig, type PeerReply, type PeerRequest, type ReadSpec } from './near-peer';
import { defineModels, MAX_IN_LIST, seed, type World } from './schema';
import { assertInRounds } from './rounds';
import { openShared } from './stress-shared';
import { writeArb } from './writes-assoc';
import { StaleReadError, type Write } from './writes';

const STEPS = Number(process.env['FC_PROC_STEPS'] ?? 300);
const MAX_STEPS_PER_RUN = 20;
const EXPECTED_STEPS_PER_RUN = 10;
/** Generated reads kept and re-checked after later steps. */
const POOL = 6;
const WORKER = join(__dirname, 'near-peer-worker.ts');

type Step = { readonly k: 'write'; readonly write: Write } | { readonly k: 'read'; readonly read: ReadSpec };
const stepText = (s: Step): string => (s.k === 'write' ? `write ${s.write.label}` : `read  ${specLabel(s.read)}`);
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: writeArb.map((write): Step => ({ k: 'write', write })) },
  { weight: 2, arbitrary: readSpecArb.map((read): Step => ({ k: 'read', read })) },
).map((s) => ({ ...s, [fc.toStringMethod]: () => `\n  ${stepText(s)}` }));

interface Checked { readonly results: readonly (readonly [string, string])[]; readonly reads: number; readonly nearHits: number }

/** The peer process: one request at a time. */
class Peer {
  private seq = 0;
  private pending: { seq: number; resolve: (c: Checked) => void; reject: (e: Error) => void } | undefined;
  private exited: string | undefined;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (msg: PeerReply) => {
      const p = this.pending;
      if (msg.type === 'ready' || !p) return;
      if (msg.type === 'error') { this.pending = undefined; p.reject(new Error(`peer process failed:\n${msg.message}`)); return; }
      if (msg.seq !== p.seq) return;
      this.pending = undefined;
      p.resolve(msg);
    });
    child.on('exit', (code, signal) => {
      this.exited = `peer process exited with ${signal ?? code}`;
      this.pending?.reject(new Error(this.exited));
      this.pending = undefined;
    });
  }

  static async start(config: PeerConfig): Promise<Peer> {
    const child = fork(WORKER, [JSON.stringify(config)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const peer = new Peer(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('peer process not ready after 60 s')), 60_000);
      child.on('message', (msg: PeerReply) => {
        if (msg.type === 'ready') { clearTimeout(timer); resolve(); }
        if (msg.type === 'error') { clearTimeout(timer); reject(new Error(`peer process failed:\n${msg.message}`)); }
      });
      child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`peer process exited with ${code} before ready`)); });
    });
    return peer;
  }

  check(reads: readonly ReadSpec[]): Promise<Checked> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    this.seq += 1;
    const seq = this.seq;
    return new Promise<Checked>((resolve, reject) => {
      this.pending = { seq, resolve, reject };
      this.child.send({ type: 'check', seq, reads } satisfies PeerRequest);
    });
  }

  /** Asks the peer to close its connections; kills it if it has not exited within 10 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    try { this.child.send({ type: 'stop' } satisfies PeerRequest); } catch { /* channel already closed */ }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** Back to the seed rows with identities restarted, and no cached value left. */
async function reset(dialect: Dialect, w: World): Promise<void> {
  const tables = ['owners', 'items', 'notes', 'labels', 'item_labels'];
  await w.cacheops.noInvalidation(async () => {
    if (dialect === 'postgres') await w.sequelize.query(`TRUNCATE ${tables.join(', ')} RESTART IDENTITY`);
    else if (dialect === 'mysql') for (const t of tables) await w.sequelize.query(`TRUNCATE TABLE ${t}`);
    else {
      for (const t of tables) await w.sequelize.query(`DELETE FROM ${t}`);
      await w.sequelize.query('DELETE FROM sqlite_sequence');
    }
  });
  await seed(w.m);
  await w.cacheops.invalidateAll();
}

for (const dialect of dialects()) {
  test.serial(`${dialect}, near cache on in a second process: its reads always equal the database`, async (t) => {
    t.timeout(30 * 60_000);
    const seedValue = process.env['FC_SEED'] !== undefined ? Number(process.env['FC_SEED']) : Math.floor(Math.random() * 0x7fffffff);
    const path = process.env['FC_PATH'];
    const dir = dialect === 'sqlite' ? mkdtempSync(join(tmpdir(), 'cacheops-ns2p-')) : undefined;
    const db = { dialect, testFile: __filename, ...(dir ? { storage: join(dir, 'shared.sqlite') } : {}) };
    const prefix = uniquePrefix(`ns2p-${dialect}`);
    const sequelize = await openShared(db);
    let cacheops: Cacheops | undefined;
    let peer: Peer | undefined;
    const totals = { runs: 0, steps: 0, checks: 0, peerReads: 0, nearHits: 0 };
    const started = Date.now();
    try {
      if (dialect === 'sqlite') await sequelize.query('PRAGMA journal_mode=WAL');
      const m = defineModels(sequelize);
      await sequelize.sync({ force: true });
      cacheops = installCacheops(sequelize, {
        redis: redisUrl, prefix, profiles: { '*': { ops: 'all', near: true } }, maxInListLength: MAX_IN_LIST, redisTimeout: 10_000,
      });
      const world: World = { dialect, sequelize, cacheops, m };
      peer = await Peer.start({ ...db, prefix, maxInListLength: MAX_IN_LIST });
      const p = peer;

      const property = fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: MAX_STEPS_PER_RUN, size: 'max' }), async (steps) => {
        totals.runs += 1;
        await reset(dialect, world);
        const pool: ReadSpec[] = [];
        const done: string[] = [];
        for (const step of steps) {
          if (step.k === 'write') await step.write.run(world, { transaction: undefined, extra: {} });
          else {
            pool.push(step.read);
            if (pool.length > POOL) pool.shift();
          }
          done.push(stepText(step));
          totals.steps += 1;
          const specs = [...FIXED_SPECS, ...pool];
          // No write runs meanwhile: the database answers here and there alike.
          const [fresh, there] = await Promise.all([
            (async () => { const out: string[] = []; for (const s of specs) out.push(await runSpec(m, s, false)); return out; })(),
            p.check(specs),
          ]);
          totals.checks += 1;
          totals.peerReads = there.reads;
          totals.nearHits = there.nearHits;
          specs.forEach((s, i) => {
            const [first, second] = there.results[i]!;
            for (const [n, got] of [[1, first], [2, second]] as const) {
              if (got !== fresh[i]) {
                throw new StaleReadError(`stale read in the peer process (run ${n} of 2) after:\n  ${done.join('\n  ')}\n  read:  ${specLabel(s)}\n  peer:  ${got}\n  fresh: ${fresh[i]}`);
              }
            }
          });
        }
      });
      await assertInRounds(property, {
        label: dialect, target: STEPS, steps: () => totals.steps, expectedStepsPerRun: EXPECTED_STEPS_PER_RUN, seed: seedValue, path, log: (m) => t.log(m),
      });
      await p.stop();
    } finally {
      peer?.kill();
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      t.log(`${dialect}: ${totals.runs} runs, ${totals.steps} steps, ${totals.checks} checks, ${totals.peerReads} reads in the peer process (${totals.nearHits} near hits), ${seconds} s`);
      if (cacheops) {
        await cacheops.invalidateAll();
        await cacheops.close();
      }
      await sequelize.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    t.true(path !== undefined || totals.steps >= STEPS, `ran ${totals.steps} of ${STEPS} steps`);
    // Not vacuous: a good share of the peer's reads came from its near cache.
    t.true(totals.nearHits * 20 > totals.peerReads, `only ${totals.nearHits} near hits in ${totals.peerReads} reads of the peer`);
  });
}
