/**
 * What every change source (one per dialect) offers its installation, and the
 * tables a stream covers.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { CacheopsCore, InvalidationItem } from '../core/cacheops-core';
import { CacheopsStreamError } from '../core/errors';
import { tableOf } from '../core/tables';

/** `consumer`: this process reads the stream; `standby`: another one does; `off`: no stream. */
export type StreamRole = 'consumer' | 'standby' | 'off';

/** `stats().changeStream`. */
export interface ChangeStreamStats {
  role: StreamRole;
  /** Milliseconds from the last invalidated transaction's commit to its invalidation (null: none yet). */
  lagMs: number | null;
  /** Bytes of WAL the slot keeps on the server (PostgreSQL; null elsewhere or not known yet). */
  retainedBytes: number | null;
  /** Changes (rows, truncates, foreign commits on SQLite) turned into invalidations. */
  events: number;
  /** Times the stream's position was lost and everything it covers invalidated. */
  resets: number;
}

/** A running change source: its counters and how to stop it. */
export interface ChangeSource {
  readonly stats: ChangeStreamStats;
  /** Settles once the source has taken its role; rejects (CacheopsStreamError) when it cannot run. */
  readonly ready: Promise<void>;
  /** Stops reading; resolves when no invalidation of it is in flight. */
  close(): Promise<void>;
}

export function emptyStats(role: StreamRole): ChangeStreamStats {
  return { role, lagMs: null, retainedBytes: null, events: 0, resets: 0 };
}

/** The models of the installation by table name (as invalidations name tables). */
export function modelsByTable(core: CacheopsCore): Map<string, ModelStatic<Model>> {
  const out = new Map<string, ModelStatic<Model>>();
  for (const model of Object.values(core.sequelize.models)) out.set(tableOf(model), model);
  return out;
}

/** Every table of the installation, model-wide: what a lost position costs. */
export function everything(core: CacheopsCore): InvalidationItem[] {
  return [...modelsByTable(core)].map(([table, model]) => ({ model, table, rows: 'all' as const }));
}

/** Resolves after ms, or at once when the signal fires; never keeps the process alive. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) { resolve(); return; }
    const done = (): void => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve(); };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener('abort', done);
  });
}

/** What runSessions needs of a consumer: its state, its one session, and how it words a failure. */
export interface SessionLoop {
  readonly signal: AbortSignal;
  readonly stats: ChangeStreamStats;
  /** `connection`: the failure warning was logged; the session sets it false once connected. */
  readonly warned: { connection: boolean };
  readonly retryMs: number;
  /** Connects, stands by or consumes; returns when the signal fires, throws when the session ends otherwise. */
  session(): Promise<void>;
  /** Closes what the session opened, however it ended. */
  disconnect(): Promise<void>;
  settle(error?: Error): void;
  log(message: string, error?: unknown): void;
  /** Logged once for a run of failed sessions. */
  readonly warning: string;
  /** The database the stream reads, as changeStreamReady names it while sessions fail. */
  readonly reading: string;
  /** A session ended on purpose (the lease lost, a position reset): the next one starts without a warning. */
  restart?(error: unknown): boolean;
}

/**
 * Runs sessions one after another until the signal fires: a CacheopsStreamError
 * (the server cannot stream) turns the stream off for good; any other failure
 * is warned about once and retried every retryMs.
 */
export async function runSessions(s: SessionLoop): Promise<void> {
  while (!s.signal.aborted) {
    try {
      await s.session();
    } catch (error) {
      if (s.signal.aborted) break;
      if (error instanceof CacheopsStreamError) {
        s.log(error.message);
        s.stats.role = 'off';
        s.settle(error);
        return;
      }
      if (!s.restart?.(error)) {
        if (!s.warned.connection) s.log(s.warning, error);
        s.warned.connection = true;
        // The first attempt decides what changeStreamReady says; the stream keeps retrying.
        s.settle(new CacheopsStreamError(`change stream: cannot read ${s.reading} yet (${(error as Error).message}); retrying every ${s.retryMs} ms`, { cause: error }));
      }
    } finally {
      await s.disconnect();
    }
    if (s.stats.role === 'consumer') s.stats.role = 'standby';
    await pause(s.retryMs, s.signal);
  }
}

/** Logs message when a measure goes over its threshold, once until it is back under. */
export function warnOnce<K extends string>(warned: Record<K, boolean>, kind: K, over: boolean, message: string, log: (message: string) => void): void {
  if (over && !warned[kind]) log(message);
  warned[kind] = over;
}
