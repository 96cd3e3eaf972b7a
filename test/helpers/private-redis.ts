/**
 * A private redis-server on a free port, for tests that must stop Redis,
 * limit its memory or otherwise change it without touching the shared one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server (the data is gone: no persistence). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  /** Lets a paused server go on (SIGCONT). */
  resume(): void;
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(port: number, up: boolean): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    const client = new IORedis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    let ok = false;
    try {
      await client.connect();
      ok = (await client.ping()) === 'PONG';
    } catch {
      ok = false;
    } finally {
      client.disconnect();
    }
    if (ok === up) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server on port ${port} did not ${up ? 'start' : 'stop'}`);
}

/** The servers' directories, removed when the test process exits (a stopped server may be started again until then). */
const dirs = new Set<string>();
let removing = false;

function removeOnExit(dir: string): void {
  dirs.add(dir);
  if (removing) return;
  removing = true;
  process.once('exit', () => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
}

/** Starts redis-server with extra arguments (e.g. ['--maxmemory', '2mb']). */
export async function startPrivateRedis(extraArgs: readonly string[] = []): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-test-redis-'));
  removeOnExit(dir);
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], { stdio: 'ignore' });
    await waitFor(port, true);
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    async stop() {
      child?.kill('SIGCONT');
      child?.kill('SIGKILL');
      await waitFor(port, false);
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
  };
}

