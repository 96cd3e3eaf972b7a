/**
 * A consumer project of the packed package, as a new user gets it: `npm pack`
 * of this repository, installed from the tarball into an empty directory with
 * `sequelize` and the TypeScript and @types/node versions asked for (from the
 * npm cache when it has them, else the registry). The sqlite3 native module is
 * linked from this repository's node_modules instead of being compiled again.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const root = join(__dirname, '..', '..');

export interface CommandResult { readonly code: number; readonly stdout: string; readonly stderr: string }

/** Runs a command; never throws for a non-zero exit (the caller asserts on `code`). */
export async function command(file: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 240_000): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await run(file, [...args], { cwd, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 32 << 20, encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: `${e.stderr ?? ''}\n${e.message}` };
  }
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** `npm pack` of the repository (without running `prepare`: dist/ is built already, and may be in use). */
export async function packTarball(into: string): Promise<string> {
  const out = await command(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', into], root);
  if (out.code !== 0) throw new Error(`npm pack failed: ${out.stderr}`);
  const [info] = JSON.parse(out.stdout) as { filename: string }[];
  if (!info) throw new Error('npm pack printed nothing');
  return join(into, info.filename);
}

export interface ConsumerSpec {
  readonly name: string;
  /** npm version specs, e.g. 'latest' or '5.0.4'. */
  readonly typescript: string;
  readonly typesNode: string;
  /** Other packages the project's files use. */
  readonly extra?: readonly string[];
}

export interface Consumer {
  readonly dir: string;
  readonly typescript: string;
  readonly typesNode: string;
}

export function workDir(): string {
  return mkdtempSync(join(tmpdir(), 'cacheops-consumer-'));
}

/** Creates and installs a consumer project in `parent/<name>`. */
export async function installConsumer(parent: string, tarball: string, spec: ConsumerSpec): Promise<Consumer> {
  const dir = join(parent, spec.name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: `consumer-${spec.name}`, private: true, version: '1.0.0' }, null, 2)}\n`);
  const packages = [tarball, 'sequelize@6', `typescript@${spec.typescript}`, `@types/node@${spec.typesNode}`, ...(spec.extra ?? [])];
  const out = await command(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...packages], dir);
  if (out.code !== 0) throw new Error(`npm install in ${spec.name} failed: ${out.stderr}`);
  symlinkSync(join(root, 'node_modules', 'sqlite3'), join(dir, 'node_modules', 'sqlite3'), 'dir');
  const version = (pkg: string): string => (JSON.parse(readFileSync(join(dir, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
  return { dir, typescript: version('typescript'), typesNode: version('@types/node') };
}

/** The project's tsc, with a tsconfig written for the files given. */
export async function typecheck(consumer: Consumer, config: string, compilerOptions: Record<string, unknown>, files: readonly string[]): Promise<CommandResult> {
  writeFileSync(join(consumer.dir, config), `${JSON.stringify({ compilerOptions, files }, null, 2)}\n`);
  return command(process.execPath, [join(consumer.dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', config], consumer.dir);
}

/** The strict options every check uses; never skipLibCheck: the package's own declarations are checked. */
export const STRICT = { strict: true, skipLibCheck: false, target: 'es2022', types: ['node'], forceConsistentCasingInFileNames: true } as const;
