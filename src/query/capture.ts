/**
 * How a call that went the long way hands its prepared selects back to the
 * fast path: the call's options carry a capture under a symbol key.
 * Sequelize's option cloning (lodash cloneDeep, object spread) keeps symbol
 * keys and passes class instances by reference, so the capture reaches
 * QueryInterface.select and rawSelect unchanged, also through the calls a
 * method makes on the way (an association's count calls its get, which calls
 * findAll; findAndCountAll calls count and findAll).
 */
import type { Model, ModelStatic } from 'sequelize';
import type { PreparedSelect } from './intercept';

export const CAPTURE = Symbol('cacheops.capture');

/** What a raw select (count, max, min, sum, aggregate) does with the row it reads. */
export interface RawShape {
  /** The column of the plain row that is the result. */
  readonly selector: string;
  readonly plain: boolean;
  /** Parses the selected value (the aggregate's data type). */
  readonly dataType: unknown;
}

export interface RawPrepared {
  readonly prepared: PreparedSelect;
  readonly shape: RawShape;
}

export class SelectCapture {
  /** The first select of the call's model: the call's own (later ones are separate includes'). */
  select: PreparedSelect | undefined;
  /** The first raw select of the call's model. */
  raw: RawPrepared | undefined;

  /** `model`: the class the call reads; selects of it or of a class made from it by scope() are taken. */
  constructor(private readonly model: ModelStatic<Model>) {}

  private accepts(model: ModelStatic<Model>): boolean {
    return model === this.model || Object.prototype.isPrototypeOf.call(this.model, model);
  }

  offer(model: ModelStatic<Model>, prepared: PreparedSelect): void {
    if (this.select || !this.accepts(model)) return;
    this.select = prepared;
  }

  offerRaw(model: ModelStatic<Model>, prepared: PreparedSelect, shape: RawShape): void {
    if (this.raw || !this.accepts(model)) return;
    this.raw = { prepared, shape };
  }
}

/** Whether a call's options carry a capture (the call is part of another one that captures). */
export function carriesCapture(options: unknown): boolean {
  return typeof options === 'object' && options !== null && (options as Record<PropertyKey, unknown>)[CAPTURE] !== undefined;
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
