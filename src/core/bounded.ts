/**
 * A call bounded in time: its promise raced against a timer. The timer is
 * unref'd (a pending bound never keeps the process alive) and cleared as
 * soon as the race is decided (no timer outlives the call). Used wherever a
 * Redis call must not wait longer than we allow (cache-store.ts, close()).
 */

/**
 * Settles as `pending` does, or, when it has not settled within `ms`, as
 * `late` says (its value, or the error it throws). A promise that loses the
 * race settles unobserved: its late rejection is handled by the race.
 */
export function bounded<T>(pending: Promise<T>, ms: number, late: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(late());
      } catch (error) {
        reject(error);
      }
    }, ms);
    timer.unref();
  });
  return Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
}
