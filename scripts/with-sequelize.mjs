// Runs a command against another Sequelize 6 release, leaving this checkout's
// node_modules as it is: the release is installed into a scratch directory
// (from the npm cache, else the registry), the repository's package.json,
// sources, tests and scripts are copied beside it, and a node_modules of links
// to this checkout's packages is made there, but for `sequelize`, which links
// to the release. The release finds the database drivers (pg, mysql2, sqlite3)
// of this checkout through links in its own node_modules. The command runs in
// the scratch directory, which is removed afterwards.
// Usage: node scripts/with-sequelize.mjs <version> <command> [args...]
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [version, cmd, ...args] = process.argv.slice(2);
if (!version || !cmd) {
  console.error('usage: node scripts/with-sequelize.mjs <version> <command> [args...]');
  process.exit(2);
}

const scratch = mkdtempSync(join(tmpdir(), `cacheops-sequelize-${version}-`));
const cleanup = () => rmSync(scratch, { recursive: true, force: true });

// 1. The release, in a project of its own.
const release = join(scratch, 'release');
mkdirSync(release);
writeFileSync(join(release, 'package.json'), '{"name":"sequelize-release","private":true}\n');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const install = spawnSync(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', `sequelize@${version}`],
  { cwd: release, stdio: ['ignore', 'inherit', 'inherit'] });
if (install.status !== 0) {
  console.error(`with-sequelize: npm install sequelize@${version} failed`);
  cleanup();
  process.exit(1);
}
const installed = JSON.parse(readFileSync(join(release, 'node_modules', 'sequelize', 'package.json'), 'utf8')).version;
for (const driver of ['pg', 'pg-hstore', 'mysql2', 'sqlite3']) {
  const target = join(release, 'node_modules', driver);
  if (!existsSync(target) && existsSync(join(root, 'node_modules', driver))) symlinkSync(join(root, 'node_modules', driver), target, 'dir');
}

// 2. The repository, copied (links would resolve `sequelize` from the real paths), with linked packages.
const project = join(scratch, 'project');
mkdirSync(project);
for (const entry of readdirSync(root)) {
  // dist/ is left out (the tests run the sources; a build may be rewriting it meanwhile).
  if (entry === 'node_modules' || entry === '.git' || entry === 'dist') continue;
  cpSync(join(root, entry), join(project, entry), { recursive: true });
}
const modules = join(project, 'node_modules');
mkdirSync(modules);
for (const entry of readdirSync(join(root, 'node_modules'))) {
  if (entry === 'sequelize') continue;
  symlinkSync(join(root, 'node_modules', entry), join(modules, entry), 'dir');
}
symlinkSync(join(release, 'node_modules', 'sequelize'), join(modules, 'sequelize'), 'dir');
console.log(`with-sequelize: Sequelize ${installed} (asked ${version}) in ${project}`);

const child = spawn(cmd, args, { cwd: project, stdio: 'inherit', env: { ...process.env, CACHEOPS_SEQUELIZE_VERSION: installed } });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
const [code, signal] = await new Promise((resolve) => child.on('exit', (c, s) => resolve([c, s])));
cleanup();
process.exit(code ?? (signal ? 1 : 0));
