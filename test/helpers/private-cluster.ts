/**
 * A private three-master Redis Cluster on free ports, for topology tests.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis, { Cluster } from 'ioredis';
import { freePort } from './private-redis';


export interface PrivateCluster {
  readonly ports: readonly number[];
  client(): Cluster;
  /** Kills one node (SIGKILL); its data is gone, its cluster identity stays in its nodes file. */
  kill(index: number): void;
  /** Starts a killed node again: it rejoins with its slots, empty. */
  restart(index: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `replicas`: replicas per master (their ports follow the masters' in `ports`, as `redis-cli --cluster create` pairs them).
 * `nodeTimeoutMs`: `cluster-node-timeout` (Redis's default 15 s), how long a node is unreachable before the
 * cluster counts it as failed and one of its replicas is elected in its place.
 */
export async function startPrivateCluster({ replicas = 0, nodeTimeoutMs }: { replicas?: number; nodeTimeoutMs?: number } = {}): Promise<PrivateCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-cluster-'));
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  const spawnNode = (port: number): ChildProcess => spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir,
    ...(nodeTimeoutMs === undefined ? [] : ['--cluster-node-timeout', String(nodeTimeoutMs)]),
  ], { stdio: 'ignore' });
  for (let i = 0; i < 3 * (1 + replicas); i += 1) {
    // Cluster bus ports are port + 10000: keep the base low enough.
    let port = await freePort();
    while (port > 55000) port = await freePort();
    ports.push(port);
    children.push(spawnNode(port));
  }
  // Every node answers before the cluster is created (a loaded machine starts them slowly).
  for (const port of ports) {
    for (let i = 0; i < 200; i += 1) {
      if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`cluster create failed: ${created.stdout}${created.stderr}`);
  const waitOk = async (): Promise<void> => {
    for (let i = 0; i < 100; i += 1) {
      const info = spawnSync('redis-cli', ['-p', String(ports[0]), 'cluster', 'info'], { encoding: 'utf8' }).stdout;
      if (info.includes('cluster_state:ok')) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await waitOk();
  return {
    ports,
    client: () => new Cluster(ports.map((port) => ({ host: '127.0.0.1', port }))),
    kill(index) {
      children[index]?.kill('SIGKILL');
    },
    async restart(index) {
      const port = ports[index]!;
      children[index] = spawnNode(port);
      for (let i = 0; i < 100; i += 1) {
        if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await waitOk();
    },
    async stop() {
      for (const c of children) c.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `fn` on a connection of its own to each node of `ports` (in order), closed after it. */
export async function onEachNode<T>(ports: readonly number[], fn: (node: IORedis, port: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (const port of ports) {
    const node = new IORedis({ host: '127.0.0.1', port });
    try {
      results.push(await fn(node, port));
    } finally {
      node.disconnect();
    }
  }
  return results;
}
