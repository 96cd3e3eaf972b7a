/**
 * How a find call that went the long way hands its prepared select back to
 * the fast path: the call's options carry a capture under a symbol key.
 * Sequelize's option cloning keeps symbol keys and passes class instances by
 * reference, so the capture reaches QueryInterface.select unchanged.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { PreparedSelect } from './intercept';

export const CAPTURE = Symbol('cacheops.capture');

export class SelectCapture {
  private taken = false;

  constructor(
    private readonly model: ModelStatic<Model>,
    private readonly keep: (prepared: PreparedSelect) => void,
  ) {}

  /** The first select of the call's own model is the call's; later ones (separate includes) are not. */
  offer(model: ModelStatic<Model>, prepared: PreparedSelect): void {
    if (this.taken || model !== this.model) return;
    this.taken = true;
    this.keep(prepared);
  }
}

/**
 * Takes the capture off a select's options (it must not be kept with them).
 * The key is cleared, not deleted: deleting a property leaves V8 a slow
 * (dictionary) object, and these options are copied on every fast miss.
 */
export function captureOf(options: Record<PropertyKey, unknown>): SelectCapture | undefined {
  const capture = options[CAPTURE];
  if (capture === undefined) return undefined;
  options[CAPTURE] = undefined;
  return capture instanceof SelectCapture ? capture : undefined;
}
