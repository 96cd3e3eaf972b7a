/**
 * Two installations of cacheops on one database and one key prefix, each with
 * its own Sequelize and Redis connections: the view two application processes
 * have of each other (a write in one reaches the other only through Redis).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sequelize } from 'sequelize';
import { installCacheops, type Cacheops, type CacheopsConfig } from '../../src/index';
import { makeSequelize, redisUrl, uniquePrefix, type Dialect } from './env';
import type { AppClient } from './clients';
import { defineBlog } from './models';

export type BlogModels = ReturnType<typeof defineBlog>;

export interface Side extends BlogModels {
  readonly sequelize: Sequelize;
  readonly cacheops: Cacheops;
}

export interface Pair {
  readonly a: Side;
  readonly b: Side;
  close(): Promise<void>;
}

export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  return Date.now() - started;
}

/** Waits until an installation's near cache tracks (its connections are up). */
export async function nearReady(cacheops: Cacheops): Promise<void> {
  await until('near cache tracking', () => cacheops.core.near?.tracker.active === true);
}

/** A client of the application's own per installation (see helpers/clients.ts); default: a URL (cacheops's own client). */
export type ClientFactory = () => AppClient;

export async function makePair(dialect: Dialect, file: string, config: Partial<CacheopsConfig>, label: string, client?: ClientFactory): Promise<Pair> {
  const prefix = uniquePrefix(label);
  const clients: AppClient[] = [];
  let dir: string | undefined;
  const open = async (): Promise<Sequelize> => {
    if (dialect !== 'sqlite') return makeSequelize(dialect, file);
    dir ??= mkdtempSync(join(tmpdir(), 'cacheops-near-'));
    return new Sequelize({ dialect: 'sqlite', storage: join(dir, 'db.sqlite'), logging: false });
  };
  const side = async (sync: boolean): Promise<Side> => {
    const sequelize = await open();
    const models = defineBlog(sequelize);
    if (sync) await sequelize.sync({ force: true });
    const redis = client ? client() : redisUrl;
    if (typeof redis !== 'string') clients.push(redis);
    const cacheops = installCacheops(sequelize, { redis, prefix, profiles: { '*': { ops: 'all', near: true } }, ...config });
    return { sequelize, cacheops, ...models };
  };
  const sides: Side[] = [];
  const close = async (): Promise<void> => {
    try {
      await sides[0]?.cacheops.invalidateAll();
    } finally {
      for (const s of sides) {
        await s.cacheops.close();
        await s.sequelize.close();
      }
      for (const c of clients) c.disconnect();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    sides.push(await side(true));
    sides.push(await side(false));
    await Promise.all(sides.map((s) => nearReady(s.cacheops)));
  } catch (error) {
    // Nothing may outlive a failed setup: open connections would keep the test worker alive.
    await close().catch(() => undefined);
    throw error;
  }
  return { a: sides[0]!, b: sides[1]!, close };
}
