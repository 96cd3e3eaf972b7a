/**
 * The Sequelize instances with an open cacheops installation. install.ts keeps
 * it; features that are not given their installation (the file cache, when it
 * rebuilds model instances) ask it for the only one.
 */
import type { Sequelize } from 'sequelize';

const open = new Set<Sequelize>();

export function installationOpened(sequelize: Sequelize): void {
  open.add(sequelize);
}

export function installationClosed(sequelize: Sequelize): void {
  open.delete(sequelize);
}

/** The Sequelize of the only open installation; undefined when there is none or several. */
export function soleInstalledSequelize(): Sequelize | undefined {
  return open.size === 1 ? [...open][0] : undefined;
}
