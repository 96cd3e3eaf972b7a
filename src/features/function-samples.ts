/**
 * Samples: what a cached function, fragment or view depends on. A model
 * (all its rows), a scoped model (the rows of its scope's where), an
 * instance (its row, by primary key), or `{ model, where }`.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { Dependency } from '../core/cache-store';
import type { CacheopsCore } from '../core/cacheops-core';
import { CacheopsConfigError } from '../core/errors';
import { tableOf, treeContext } from '../core/tables';
import { TRUE, or, whereToDnf, FALSE, type Dnf } from '../core/tree';
import { primaryKeysOf, scopeWhereOf } from '../core/sequelize-internals';

export type Sample = ModelStatic<Model> | Model | { readonly model: ModelStatic<Model>; readonly where?: unknown };

function isModelClass(v: unknown): v is ModelStatic<Model> {
  return typeof v === 'function' && typeof (v as { rawAttributes?: unknown }).rawAttributes === 'object';
}

function isInstance(v: unknown): v is Model {
  return typeof v === 'object' && v !== null && isModelClass((v as { constructor?: unknown }).constructor) && 'dataValues' in v;
}

export function isSample(v: unknown): v is Sample {
  return isModelClass(v) || isInstance(v) || (typeof v === 'object' && v !== null && isModelClass((v as { model?: unknown }).model));
}

/** The model and where a sample stands for. */
function resolve(sample: Sample): { model: ModelStatic<Model>; where: unknown } {
  if (isModelClass(sample)) {
    return { model: sample, where: scopeWhereOf(sample) };
  }
  if (isInstance(sample)) {
    const model = sample.constructor as ModelStatic<Model>;
    const pks = primaryKeysOf(model);
    const values = sample.dataValues as Record<string, unknown>;
    return { model, where: pks.length ? Object.fromEntries(pks.map((k) => [k, values[k]])) : undefined };
  }
  return { model: sample.model, where: sample.where };
}

/** The dependencies of samples; throws CacheopsConfigError on something that is not a sample. */
export function sampleDependencies(core: CacheopsCore, samples: readonly unknown[], key: string): { deps: Dependency[]; models: ModelStatic<Model>[] } {
  const byTable = new Map<string, Dnf>();
  const models: ModelStatic<Model>[] = [];
  samples.forEach((s, i) => {
    if (!isSample(s)) throw new CacheopsConfigError(`${key}[${i}]`, 'a sample is a model, a scoped model, an instance or { model, where }');
    const { model, where } = resolve(s);
    core.checkModel(model, `${key}[${i}]`);
    models.push(model);
    const dnf = where === undefined ? TRUE : whereToDnf(where, treeContext(model, core.dialect, core.config.maxInListLength));
    byTable.set(tableOf(model), or(byTable.get(tableOf(model)) ?? FALSE, dnf));
  });
  return { deps: [...byTable].map(([table, conjs]) => ({ table, conjs })), models };
}
