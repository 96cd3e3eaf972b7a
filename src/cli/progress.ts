/**
 * Progress of a long CLI command (reap-conjs, stats), written to stderr so
 * that stdout keeps only the result. On a terminal it is a bar redrawn in
 * place; anywhere else (a pipe, a log file, CI) it is plain lines, at most one
 * a second, so that a long run in a deployment log still shows it advancing.
 * Both carry counts and a rate.
 */

export interface ProgressSink {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface ProgressState {
  /** Units done so far (keys visited). */
  readonly done: number;
  /** Units expected in total, when known (0: unknown). */
  readonly total: number;
  /** What else to say, e.g. "3 dead members removed". */
  readonly detail?: string;
}

export interface Progress {
  update(state: ProgressState): void;
  /** The last state, always printed (a bar ends its line). */
  finish(state: ProgressState): void;
}

export interface ProgressOptions {
  /** The command's name, starting each plain line. */
  readonly label: string;
  /** What a unit is ("keys"). */
  readonly unit: string;
  /** Plain lines: print the final line even when the run took less than `everyMs` (default true). */
  readonly alwaysFinish?: boolean;
  /** Plain lines: the interval (default 1000 ms). */
  readonly everyMs?: number;
  readonly now?: () => number;
}

/** Units a second; a run shorter than a millisecond counts as one. */
function rate(done: number, ms: number): string {
  const perSecond = (done * 1000) / Math.max(1, ms);
  return perSecond >= 100 ? String(Math.round(perSecond)) : perSecond.toFixed(1);
}

export function progress(sink: ProgressSink, options: ProgressOptions): Progress {
  const now = options.now ?? Date.now;
  const started = now();
  const every = options.everyMs ?? 1000;
  let last = started;
  let printed = false;
  const describe = (s: ProgressState): string => {
    const ms = now() - started;
    const of = s.total > 0 ? `${s.done} of ${s.total} ${options.unit} (${Math.floor((100 * Math.min(s.done, s.total)) / s.total)}%)` : `${s.done} ${options.unit}`;
    return `${of} in ${(ms / 1000).toFixed(1)} s, ${rate(s.done, ms)} ${options.unit}/s${s.detail ? `, ${s.detail}` : ''}`;
  };

  if (sink.isTTY) {
    const draw = (s: ProgressState): void => {
      const ratio = s.total > 0 ? Math.min(1, s.done / s.total) : 1;
      const filled = Math.round(ratio * 30);
      sink.write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(30 - filled)}] ${describe(s)}`);
      printed = true;
    };
    return {
      update(s) {
        const t = now();
        if (t - last >= 100) {
          last = t;
          draw(s);
        }
      },
      finish(s) {
        if (!printed && options.alwaysFinish === false && now() - started < every) return;
        draw(s);
        sink.write('\n');
      },
    };
  }
  return {
    update(s) {
      const t = now();
      if (t - last >= every) {
        last = t;
        printed = true;
        sink.write(`${options.label}: ${describe(s)}\n`);
      }
    },
    finish(s) {
      if (!printed && options.alwaysFinish === false) return;
      sink.write(`${options.label}: done, ${describe(s)}\n`);
    },
  };
}
