/**
 * Module-level functions: they find their installation through the model or
 * instance they are given (or the only installation, where there is one).
 */
import type { Model, ModelStatic, Transaction } from 'sequelize';
import { installationFor } from './install';

/** @example await invalidateObj(post) */
export async function invalidateObj(instance: Model, options?: { transaction?: Transaction }): Promise<void> {
  await installationFor(instance).invalidateObj(instance, options);
}

/** @example await invalidateDict(Post, { categoryId: 2 }) */
export async function invalidateDict(model: ModelStatic<Model>, values: Readonly<Record<string, unknown>>, options?: { transaction?: Transaction }): Promise<void> {
  await installationFor(model).invalidateDict(model, values, options);
}

/** @example await invalidateModel(Post) */
export async function invalidateModel(model: ModelStatic<Model>, options?: { transaction?: Transaction }): Promise<void> {
  await installationFor(model).invalidateModel(model, options);
}

/** Drops every key of the (only) installation. @example await invalidateAll() */
export async function invalidateAll(): Promise<void> {
  await installationFor().invalidateAll();
}

/** @example await noInvalidation(async () => { await Post.update(...) }) */
export function noInvalidation<T>(fn: () => T): T {
  return installationFor().noInvalidation(fn);
}

/** Drops a cached template fragment by template name and line (or tag name), plus its extras. */
export async function invalidateFragment(nameOrTemplate: string, ...extras: unknown[]): Promise<void> {
  const { invalidateFragmentOf } = await import('./features/nunjucks-keys');
  await invalidateFragmentOf(installationFor(), nameOrTemplate, extras);
}
