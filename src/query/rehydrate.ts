/**
 * Query results <-> cached data. Instances are stored as their plain nested
 * values and rebuilt exactly as Sequelize builds them from database rows
 * (abstract Query#handleSelectQuery): bulkBuild with the query's include
 * options, `isNewRecord: false`, `raw: true`. So a hit is an instance of the
 * right class, with its includes as instances and nothing `changed()`.
 */
import type { Model, ModelStatic } from 'sequelize';
import { instanceValues } from '../core/serialize';

/** The options Sequelize attaches to a select after conforming includes. */
export interface SelectOptions {
  readonly raw?: boolean;
  readonly plain?: boolean;
  readonly include?: unknown;
  readonly includeNames?: unknown;
  readonly includeMap?: unknown;
  readonly originalAttributes?: unknown;
  readonly attributes?: unknown;
}

export function toCacheable(result: unknown, options: SelectOptions): unknown {
  if (options.raw) return result;
  if (options.plain) return result === null || result === undefined ? null : instanceValues(result as Model);
  return (result as Model[]).map(instanceValues);
}

export function fromCacheable(data: unknown, model: ModelStatic<Model>, options: SelectOptions): unknown {
  if (options.raw) return data;
  if (data === null) return null;
  const rows = (options.plain ? [data] : data) as Record<string, unknown>[];
  const built = model.bulkBuild(rows, {
    isNewRecord: false,
    include: options.include,
    includeNames: options.includeNames,
    includeMap: options.includeMap,
    includeValidated: true,
    attributes: options.originalAttributes ?? options.attributes,
    raw: true,
  } as never);
  return options.plain ? built[0] ?? null : built;
}
