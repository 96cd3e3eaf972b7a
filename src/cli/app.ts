/**
 * Loading the application for the CLI (`--app path/to/module`): the module's
 * default export or `sequelize` export (or the module itself) is a Sequelize
 * with cacheops installed, a promise of one, or the Cacheops object.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Sequelize } from 'sequelize';
import { CacheopsError } from '../core/errors';
import { Cacheops, installationOf } from '../install';

/** A bad `--app`: the CLI exits with code 2. */
export class UsageError extends CacheopsError {}

function isSequelize(v: unknown): v is Sequelize {
  return typeof v === 'object' && v !== null && typeof (v as { getDialect?: unknown }).getDialect === 'function'
    && typeof (v as { models?: unknown }).models === 'object';
}

// A real dynamic import, which a CommonJS build would otherwise turn into require().
const importModule = new Function('url', 'return import(url)') as (url: string) => Promise<Record<string, unknown>>;

async function loadModule(file: string): Promise<Record<string, unknown>> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as Record<string, unknown>;
  } catch (error) {
    const c = (error as { code?: string }).code;
    if (c !== 'ERR_REQUIRE_ESM' && c !== 'ERR_REQUIRE_ASYNC_MODULE') throw error;
    return importModule(pathToFileURL(file).href);
  }
}

/** Loads the module and finds its installation; UsageError when it has none. */
export async function loadApp(path: string, cwd: string): Promise<Cacheops> {
  const file = resolve(cwd, path);
  if (!existsSync(file)) throw new UsageError(`--app ${path}: no such file (${file})`);
  let mod: Record<string, unknown>;
  try {
    mod = await loadModule(file);
  } catch (error) {
    const hint = /\.[cm]?ts$/.test(file) ? ' (a TypeScript module needs a loader: NODE_OPTIONS="--import tsx" cacheops ...)' : '';
    throw new CacheopsError(`--app ${path}: the module failed to load${hint}: ${(error as Error).message}`, { cause: error });
  }
  const candidates = [mod['default'], mod['sequelize'], mod['cacheops'], mod];
  for (const raw of candidates) {
    const value: unknown = raw instanceof Promise ? await raw : raw;
    if (value instanceof Cacheops) return value;
    if (isSequelize(value)) {
      const found = installationOf(value);
      if (found) return found;
      throw new UsageError(`--app ${path}: its Sequelize has no cacheops installed (call installCacheops in the module, and use the same sequelize-cacheops package as this command)`);
    }
  }
  throw new UsageError(`--app ${path}: the module exports no Sequelize instance (export it as default or as \`sequelize\`)`);
}
