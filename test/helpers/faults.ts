/**
 * What the fault-matrix tests share: a TCP proxy that delays every byte
 * (latency without touching Redis), a Sentinel setup that can fail over, and
 * a workload of concurrent reads and writes that records latencies, errors,
 * cache hits and, once it stopped, stale reads; and a filler that makes a
 * Redis with maxmemory full.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';
import type { Blog } from './models';
import { freePort, startPrivateRedis, type PrivateRedis } from './private-redis';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Forwards a port to a Redis, holding every chunk `delayMs` in each direction (order kept). */
export class DelayProxy {
  delayMs = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async start(upstreamPort: number): Promise<void> {
    this.port = await freePort();
    this.server = createServer((client) => {
      const upstream = connect({ port: upstreamPort, host: '127.0.0.1' });
      this.sockets.add(client).add(upstream);
      this.pipe(client, upstream);
      this.pipe(upstream, client);
      const end = (): void => { client.destroy(); upstream.destroy(); };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  /** A FIFO per direction: a chunk leaves at max(arrival + delay, the previous one's departure). */
  private pipe(from: Socket, to: Socket): void {
    const queue: { due: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = (): void => {
      timer = undefined;
      while (queue.length > 0 && queue[0]!.due <= Date.now()) to.write(queue.shift()!.chunk);
      if (queue.length > 0) timer = setTimeout(pump, queue[0]!.due - Date.now());
    };
    from.on('data', (chunk: Buffer) => {
      const last = queue.length > 0 ? queue[queue.length - 1]!.due : 0;
      queue.push({ due: Math.max(Date.now() + this.delayMs, last), chunk });
      if (!timer) pump();
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** A master, a replica and one Sentinel (quorum 1, quick failure detection). */
export interface PrivateSentinel {
  readonly master: PrivateRedis;
  readonly replica: PrivateRedis;
  readonly port: number;
  readonly name: string;
  /** The port Sentinel currently reports as master. */
  masterPort(): number | undefined;
  stop(): Promise<void>;
}

export async function startPrivateSentinel(): Promise<PrivateSentinel> {
  const master = await startPrivateRedis();
  const replica = await startPrivateRedis(['--replicaof', '127.0.0.1', String(master.port)]);
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-sentinel-'));
  const port = await freePort();
  const name = 'faultmaster';
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, [
    `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
    `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
    `sentinel down-after-milliseconds ${name} 400`,
    `sentinel failover-timeout ${name} 2000`,
  ].join('\n'));
  const sentinel: ChildProcess = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  const masterPort = (): number | undefined => {
    const out = spawnSync('redis-cli', ['-p', String(port), 'sentinel', 'get-master-addr-by-name', name], { encoding: 'utf8' }).stdout.trim().split('\n');
    return out.length === 2 ? Number(out[1]) : undefined;
  };
  // Ready once Sentinel knows the master and the replica has its first copy.
  for (let i = 0; i < 100; i += 1) {
    const info = spawnSync('redis-cli', ['-p', String(replica.port), 'info', 'replication'], { encoding: 'utf8' }).stdout;
    if (masterPort() === master.port && info.includes('master_link_status:up')) break;
    await sleep(50);
  }
  return {
    master, replica, port, name, masterPort,
    async stop() {
      sentinel.kill('SIGKILL');
      await master.stop().catch(() => undefined);
      await replica.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface WorkloadResult {
  reads: number;
  writes: number;
  errors: string[];
  /** Read latencies (ms) with the time they started. */
  latencies: { at: number; ms: number }[];
  /** The same reads with cacheops: false, by one reader alongside: what the database costs meanwhile. */
  plain: { at: number; ms: number }[];
  /** When cache hits happened. */
  hits: number[];
}

export const KEYS = [0, 1, 2, 3] as const;
export const readOf = (blog: Blog, k: number, cached = true) =>
  blog.Post.findAll({ where: { views: k }, order: [['id', 'ASC']], ...(cached ? {} : { cacheops: false }) });

/** Readers and writers on the Post table until stopped; nothing they do may reject. */
export function startWorkload(blog: Blog, { readers = 4, writers = 2, writePauseMs = 10 } = {}): { stop(): Promise<WorkloadResult> } {
  const result: WorkloadResult = { reads: 0, writes: 0, errors: [], latencies: [], plain: [], hits: [] };
  let running = true;
  const onRead = (e: { hit: boolean }): void => { if (e.hit) result.hits.push(Date.now()); };
  blog.cacheops.on('read', onRead);
  const reader = async (i: number, cached = true): Promise<void> => {
    for (let n = i; running; n += 1) {
      const at = Date.now();
      const started = performance.now();
      try {
        await readOf(blog, KEYS[n % KEYS.length]!, cached);
        if (cached) result.reads += 1;
        (cached ? result.latencies : result.plain).push({ at, ms: performance.now() - started });
      } catch (error) {
        result.errors.push(`read: ${(error as Error).message}`);
      }
      await sleep(1);
    }
  };
  const writer = async (i: number): Promise<void> => {
    for (let n = i; running; n += 1) {
      const k = KEYS[n % KEYS.length]!;
      try {
        if (n % 5 === 0) await blog.Post.create({ title: `c${i}-${n}`, views: k });
        else await blog.Post.update({ title: `u${i}-${n}` }, { where: { views: k } });
        result.writes += 1;
      } catch (error) {
        result.errors.push(`write: ${(error as Error).message}`);
      }
      await sleep(writePauseMs);
    }
  };
  const loops = [...Array.from({ length: readers }, (_, i) => reader(i)), reader(0, false), ...Array.from({ length: writers }, (_, i) => writer(i))];
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      blog.cacheops.off('read', onRead);
      return result;
    },
  };
}

/** Reads every key through the cache (twice: a miss may store, then a hit) and counts answers that differ from the database's. */
export async function staleReads(blog: Blog): Promise<number> {
  let stale = 0;
  for (const k of KEYS) {
    const truth = JSON.stringify((await readOf(blog, k, false)).map((p) => p.toJSON()));
    for (let i = 0; i < 2; i += 1) {
      if (JSON.stringify((await readOf(blog, k)).map((p) => p.toJSON())) !== truth) stale += 1;
    }
  }
  return stale;
}

export function p99(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0;
}

/** Writes 64 KB values from another client until Redis refuses one with OOM (and stays full); returns their keys. */
export async function fillRedis(url: string): Promise<string[]> {
  const raw = new IORedis(url);
  const keys: string[] = [];
  try {
    for (let i = 0; i < 10_000; i += 1) {
      try {
        await raw.set(`filler:${i}`, Buffer.alloc(64 * 1024, 1));
        keys.push(`filler:${i}`);
      } catch (error) {
        if (!/OOM/.test((error as Error).message)) throw error;
        // The filling client's buffers count too and go with it, and the other clients' buffers
        // and the invalidations' deletes move memory by tens of KB: the limit is set 1 MB below
        // what the data holds, so Redis stays full once this client has gone (a probe that found
        // room for a moment would end the full state while the test means it to last).
        const used = Number(/used_memory:(\d+)/.exec(await raw.info('memory'))?.[1]);
        await raw.config('SET', 'maxmemory', String(used - 1024 * 1024));
        return keys;
      }
    }
    throw new Error('Redis never filled');
  } finally {
    raw.disconnect();
  }
}

export async function unfillRedis(url: string, keys: readonly string[]): Promise<void> {
  const raw = new IORedis(url);
  try {
    for (let i = 0; i < keys.length; i += 100) await raw.del(...keys.slice(i, i + 100));
  } finally {
    raw.disconnect();
  }
}
