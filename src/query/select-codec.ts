/**
 * The codec of a select's cached value (read-plan.ts): the query's result as
 * stored (rehydrate.ts) and, for the near cache, copies of a decoded result
 * (copy.ts). One per prepared select and model class, kept from one read to
 * the next, so a hit allocates none.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { ValueCodec } from '../core/read-plan';
import { decodeRaw, encodeRaw } from '../core/serialize';
import { copyValue } from './copy';
import { fromCacheable, toCacheable, type SelectOptions } from './rehydrate';

export class SelectCodec implements ValueCodec<unknown> {
  /** A decoded result is built with the model class and the options: kept results are shared only between equal ones. */
  readonly owners: readonly object[];
  readonly copy = copyValue;

  constructor(readonly model: ModelStatic<Model>, private readonly options: SelectOptions) {
    this.owners = [model, options];
  }

  encode(value: unknown): Buffer {
    return encodeRaw(toCacheable(value, this.options));
  }

  decode(bytes: Buffer): { readonly value: unknown } | undefined {
    const raw = decodeRaw(bytes);
    return raw && { value: fromCacheable(raw.value, this.model, this.options) };
  }
}
