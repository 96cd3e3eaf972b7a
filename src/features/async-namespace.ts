/**
 * A CLS namespace for `Sequelize.useCLS`, built on `AsyncLocalStorage`.
 *
 * Sequelize 6 asks little of the namespace: `useCLS` checks that it has `run`
 * and `bind`; `sequelize.transaction(fn)` runs `fn` inside `run((context) => …)`
 * and `set('transaction', t)` once the transaction began; every query reads
 * `get('transaction')`; the cleanup after commit or rollback sets it back to
 * null when it is still the current one. `cls-hooked` does this with an
 * async_hooks hook on every asynchronous resource of the process (transaction
 * or not); `AsyncLocalStorage` is Node's own context propagation, maintained
 * and cheaper (see the README's figures).
 *
 * The semantics are those of cls-hooked: `run` opens a context that inherits
 * from the current one (a nested transaction sees its parent's values until it
 * sets its own, and setting them never changes the parent's), and `set`
 * outside any context throws.
 *
 * @example
 * import { Sequelize } from 'sequelize';
 * import { createAsyncLocalNamespace } from 'sequelize-cacheops';
 * Sequelize.useCLS(createAsyncLocalNamespace());
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CacheopsError } from '../core/errors';

/** A context: the values set in it, over those of the context it was opened in. */
export type ClsContext = Record<string, unknown>;

/** The namespace interface Sequelize 6 uses (cls-hooked's, without its async_hooks machinery). */
export interface AsyncLocalNamespace {
  /** The value in the current context; undefined outside any. */
  get(key: string): unknown;
  /** Sets a value in the current context; throws outside any. */
  set<T>(key: string, value: T): T;
  /** Runs `fn` synchronously in a new context inheriting from the current one; returns that context. */
  run(fn: (context: ClsContext) => void): ClsContext;
  /** Like `run`, returning what `fn` returns. */
  runAndReturn<T>(fn: (context: ClsContext) => T): T;
  /** `fn` bound to `context` (default: the current one, else a new one): every call runs in it. */
  bind<A extends unknown[], R>(fn: (...args: A) => R, context?: ClsContext): (...args: A) => R;
  /** The current context, or null outside any. */
  readonly active: ClsContext | null;
}

class Namespace implements AsyncLocalNamespace {
  private readonly storage = new AsyncLocalStorage<ClsContext>();

  get active(): ClsContext | null {
    return this.storage.getStore() ?? null;
  }

  get(key: string): unknown {
    return this.storage.getStore()?.[key];
  }

  set<T>(key: string, value: T): T {
    const context = this.storage.getStore();
    if (!context) throw new CacheopsError('no CLS context: set() must be called inside run() or a bound function');
    context[key] = value;
    return value;
  }

  private child(): ClsContext {
    return Object.create(this.storage.getStore() ?? null) as ClsContext;
  }

  run(fn: (context: ClsContext) => void): ClsContext {
    const context = this.child();
    this.storage.run(context, fn, context);
    return context;
  }

  runAndReturn<T>(fn: (context: ClsContext) => T): T {
    const context = this.child();
    return this.storage.run(context, fn, context);
  }

  bind<A extends unknown[], R>(fn: (...args: A) => R, context?: ClsContext): (...args: A) => R {
    const bound = context ?? this.storage.getStore() ?? this.child();
    const storage = this.storage;
    return function (this: unknown, ...args: A): R {
      return storage.run(bound, () => fn.apply(this, args));
    };
  }
}

/** A new namespace for `Sequelize.useCLS` (one per process is enough: Sequelize keeps one). */
export function createAsyncLocalNamespace(): AsyncLocalNamespace {
  return new Namespace();
}
