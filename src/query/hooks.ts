/**
 * Which hooks make the fast paths step aside: hooks may change a call's
 * options or its result, so a call whose model (or Sequelize instance) has
 * any of them takes the normal path.
 */
import type { Model, ModelStatic, Sequelize } from 'sequelize';

export const FIND_HOOKS = ['beforeFind', 'beforeFindAfterExpandIncludeAll', 'beforeFindAfterOptions', 'afterFind'] as const;

export type AnyModel = ModelStatic<Model> & {
  options: { hooks?: Record<string, unknown[] | undefined>; rejectOnEmpty?: unknown };
  sequelize: Sequelize & { options: { hooks?: Record<string, unknown[] | undefined> } };
};

/** Whether a model (or the Sequelize instance, globally) has hooks of these names. */
export function hasHooks(model: AnyModel, names: readonly string[]): boolean {
  const own = model.options.hooks;
  const global = model.sequelize.options.hooks;
  for (const h of names) if ((own?.[h]?.length ?? 0) > 0 || (global?.[h]?.length ?? 0) > 0) return true;
  return false;
}
