/**
 * How a dialect gets the old and new states of the rows a write changes
 * (see protocol.ts): from the write's own statement (row images: one
 * statement returns them), or by the pre-read: the rows read FOR UPDATE
 * before the write and read again after it, in one transaction. A
 * WriteStrategy says which of them a write of a model takes, and how; the
 * protocol picks one strategy per model (strategyFor, choose.ts) and runs
 * whichever it says. A change stream would be one more strategy.
 *
 * This file holds the interface, what strategies share (the context they
 * run in, the managed-write marker, the retry of an aborted transaction) and
 * the plain pre-read, which every dialect falls back to.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Model, ModelStatic, Sequelize, Transaction } from 'sequelize';
import type { CacheopsCore } from '../../core/cacheops-core';
import { isFinished } from '../../core/sequelize-internals';
import type { ImageKind, Rewrite } from '../images/returning';
import type { StatementCapture } from '../images/statement';
import type { SqliteImages } from '../images/sqlite-state';

/** Set while a wrapped QueryInterface method runs its SQL, so the raw-query wrapper leaves it alone. */
export const insideManagedWrite = new AsyncLocalStorage<boolean>();

/** How one write's statement is rewritten to return its rows' states, and how they are read back. */
export interface ImagePlan {
  readonly rewrite: (sql: string, table: string) => Rewrite | undefined;
  readonly take?: StatementCapture['take'];
}

/** What a strategy sees of the write (protocol.ts WriteSpec). */
export interface ImageRequest {
  readonly kind: ImageKind;
  /** The write sets a primary key column. */
  readonly setsKey?: boolean;
}

export interface WriteStrategy {
  /**
   * Runs the write with row images from its own statement, through `run`
   * (the protocol's writeWithImages, which also invalidates); undefined
   * when this write cannot have them here and takes the pre-read instead.
   */
  images<R>(model: ModelStatic<Model>, request: ImageRequest, userTx: Transaction | undefined, run: (plan: ImagePlan) => Promise<R>): Promise<{ result: R } | undefined>;
  /** How a one-row insert of the pre-read returns its new state; undefined: it is read back by key. */
  insertImages(model: ModelStatic<Model>, tx: Transaction | undefined): Promise<Pick<StatementCapture, 'rewrite' | 'take'> | undefined>;
  /**
   * Runs a pre-read write (`exec`) outside any transaction of the user's:
   * `locks` when it reads rows before the write, which must not change
   * until the write ran.
   */
  preRead<T>(exec: (tx: Transaction | undefined) => Promise<T>, locks: boolean): Promise<T>;
}

/** A promise-chain mutex: one guarded write at a time (SQLite only). */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** What the strategies of one installation share. */
export interface WriteContext {
  readonly core: CacheopsCore;
  readonly sequelize: Sequelize;
  /** SQLite's row images: the connections' triggers and the tables' column types (images/sqlite-state.ts). */
  readonly sqlite: SqliteImages;
  readonly mutex: Mutex;
  /** The server's version (asked once; a failed question gives '', which has no RETURNING). */
  serverVersion(): Promise<string>;
}

/** Deadlocks and serialization failures: the database rolled the transaction back. */
export function isRetryable(error: unknown): boolean {
  const parent = (error as { parent?: { code?: unknown; errno?: unknown } } | undefined)?.parent;
  return parent?.code === '40P01' || parent?.code === '40001' || parent?.errno === 1213 || parent?.code === 'ER_LOCK_DEADLOCK' ||
    parent?.code === 'SQLITE_BUSY';
}

/** Waits a little more after each failed attempt, at random, so that two writers that collided part. */
const backOff = (attempt: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5 * attempt * Math.random()));

/** Runs fn again after a short random pause while it fails retryably (at most 20 times); nothing of a failed run was committed. */
export async function retrying<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= 20 || !isRetryable(error)) throw error;
      await backOff(attempt);
    }
  }
}

/**
 * The pre-read alone: no row images; a write that locks rows runs in a
 * transaction of ours. The dialects' strategies extend it; `keyed` says
 * whether the model has a primary key, without which a statement's images
 * of an update or delete are not taken (the pre-read reads its rows back).
 */
export class PreRead implements WriteStrategy {
  constructor(protected readonly ctx: WriteContext, protected readonly keyed: boolean) {}

  images<R>(_model: ModelStatic<Model>, _request: ImageRequest, _userTx: Transaction | undefined, _run: (plan: ImagePlan) => Promise<R>): Promise<{ result: R } | undefined> {
    return Promise.resolve(undefined);
  }

  insertImages(_model: ModelStatic<Model>, _tx: Transaction | undefined): Promise<Pick<StatementCapture, 'rewrite' | 'take'> | undefined> {
    return Promise.resolve(undefined);
  }

  preRead<T>(exec: (tx: Transaction | undefined) => Promise<T>, locks: boolean): Promise<T> {
    return locks ? this.inOwnTransaction(exec) : exec(undefined); // inserts: nothing to lock
  }

  /**
   * Runs exec in a transaction of ours. Locking the rows first can make two
   * writers deadlock where the bare statements would not have (MySQL gap
   * locks on keys that do not exist yet, e.g. concurrent upserts); the
   * database then aborts one of them, and since nothing of it was committed
   * it is safely run again.
   */
  private inOwnTransaction<T>(exec: (tx: Transaction) => Promise<T>): Promise<T> {
    return retrying(async () => {
      const tx = await this.ctx.sequelize.transaction();
      try {
        const out = await exec(tx);
        await tx.commit();
        return out;
      } catch (error) {
        if (!isFinished(tx)) {
          try { await tx.rollback(); } catch { /* the connection is gone; the original error matters */ }
        }
        throw error;
      }
    });
  }
}
