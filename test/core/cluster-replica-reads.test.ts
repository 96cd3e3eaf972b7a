/**
 * A Redis Cluster client that reads from replicas (`scaleReads: 'slave'` or
 * 'all', set by applications to spread their own reads). Replication is
 * asynchronous: a replica can still hold a value its master's invalidation
 * deleted, so a cached read sent there right after a write would serve the
 * old value. Cacheops reads through a copy of the application's client that
 * reads masters; the application's client is left as it is. The replicas'
 * replication is held back (CLIENT PAUSE WRITE on every replica) so the window
 * stays open for the whole check, on ioredis 5 and 6.
 */
import test, { type ExecutionContext } from 'ava';
import IORedis, { Cluster } from 'ioredis';
import { Cluster as Cluster6 } from 'ioredis6';
import { Sequelize } from 'sequelize';
import { installCacheops } from '../../src/index';
import { defineBlog } from '../helpers/models';
import { countSql } from '../helpers/env';
import { onEachNode, startPrivateCluster, type PrivateCluster } from '../helpers/private-cluster';

let cluster: PrivateCluster;

test.serial.before(async () => {
  cluster = await startPrivateCluster({ replicas: 1 });
  // A client sends reads to replicas once the node it asks for the slot map (any of them) lists
  // them: every node's CLUSTER SLOTS lists a replica for every range, and every replica's link is up.
  const nodes = cluster.ports.map((port) => new IORedis({ port }));
  try {
    const ready = async (): Promise<boolean> => {
      for (const node of nodes) {
        const slots = await node.cluster('SLOTS') as unknown[][];
        if (slots.length === 0 || slots.some((s) => s.length < 4)) return false;
        const role = await node.call('ROLE') as unknown[];
        if (role[0] === 'slave' && role[3] !== 'connected') return false;
      }
      return true;
    };
    for (let i = 0; i < 600 && !await ready(); i += 1) await new Promise((r) => setTimeout(r, 50));
  } finally {
    for (const node of nodes) node.disconnect();
  }
});

test.serial.after.always(async () => {
  await cluster?.stop();
});

/** Every replica stops applying its master's stream (and serving nothing newer) for `ms`. */
async function pauseReplicas(ms: number): Promise<number> {
  const paused = await onEachNode(cluster.ports, async (node) => {
    const role = await node.call('ROLE') as unknown[];
    if (role[0] !== 'slave') return false;
    await node.call('CLIENT', 'PAUSE', String(ms), 'WRITE');
    return true;
  });
  return paused.filter(Boolean).length;
}

async function unpauseReplicas(): Promise<void> {
  await onEachNode(cluster.ports, (node) => node.call('CLIENT', 'UNPAUSE'));
}

interface AppCluster {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<unknown>;
  readonly options: { readonly scaleReads?: unknown };
  readonly status: string;
  disconnect(): void;
}

async function check(t: ExecutionContext, client: AppCluster, scaleReads: string, near = false): Promise<void> {
  try {
    await checkWith(t, client, scaleReads, near);
  } finally {
    client.disconnect();
  }
}

async function checkWith(t: ExecutionContext, client: AppCluster, scaleReads: string, near: boolean): Promise<void> {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const { Post } = defineBlog(sequelize);
  await sequelize.sync();
  const cacheops = installCacheops(sequelize, { redis: client as never, profiles: { '*': { ops: 'all', near } }, clusterShards: 6 });
  try {
    if (near) {
      const tracker = cacheops.core.near?.tracker;
      for (let i = 0; i < 500 && !tracker?.active; i += 1) await new Promise((r) => setTimeout(r, 10));
      t.true(tracker?.active, 'the near cache tracks invalidations');
    }
    await Post.bulkCreate(Array.from({ length: 12 }, (_, i) => ({ title: `p${i}`, views: i })));
    const read = (v: number) => Post.findOne({ where: { views: v } });
    const titleOf = async (v: number): Promise<unknown> => (await read(v) as unknown as { title: string } | null)?.title;
    for (let v = 0; v < 12; v += 1) await read(v);
    // The premise: the application's own client reads what a replica holds (the old value, while held back).
    await client.set('app:k', 'v1');
    await new Promise((r) => setTimeout(r, 300)); // replicated
    for (let i = 0; i < 20; i += 1) await client.get('app:k'); // the client's connections to replicas are open
    for (let v = 0; v < 12; v += 1) t.is((await countSql(sequelize, () => read(v))).sql.length, 0, `${scaleReads}: read ${v} is a hit`);
    if (near) {
      for (let v = 0; v < 12; v += 1) await read(v); // kept in process memory by now
      t.true(cacheops.stats().nearHits >= 12, `near hits: ${cacheops.stats().nearHits}`);
    }
    t.is(await pauseReplicas(5000), 3, 'three replicas held back');
    try {
      await client.set('app:k', 'v2');
      const seen: (string | null)[] = [];
      for (let i = 0; i < 20; i += 1) seen.push(await client.get('app:k'));
      // 'slave' reads a replica every time; 'all' picks master or replica per read (logged only).
      if (scaleReads === 'slave') t.true(seen.every((v) => v === 'v1'), `${scaleReads}: the application's client reads a replica (premise): ${seen.join()}`);
      else t.log(`${scaleReads}: the application's client read ${seen.filter((v) => v === 'v1').length} of ${seen.length} times from a replica`);
      for (let v = 0; v < 12; v += 1) {
        await Post.update({ title: `changed ${v}` }, { where: { views: v } });
        t.is(await titleOf(v), `changed ${v}`, `${scaleReads}: read ${v} right after its write`);
      }
    } finally {
      await unpauseReplicas();
    }
    t.is(client.options.scaleReads, scaleReads, "the application's client keeps its own scaleReads");
  } finally {
    await cacheops.close();
    await sequelize.close();
  }
  t.not(client.status, 'end', "close() leaves the application's client open");
  t.not(cacheops.core.redis as unknown, client, 'cacheops reads through a copy');
  // The copy is closed: no node connection left ('end' after a QUIT, 'close' after an ioredis 5 disconnect).
  const copy = cacheops.core.redis as unknown as Cluster;
  const closed = (): boolean => ['end', 'close'].includes(copy.status) && copy.nodes('all').length === 0;
  for (let i = 0; i < 100 && !closed(); i += 1) await new Promise((r) => setTimeout(r, 20));
  t.true(closed(), `close() closes the copy (${copy.status}, ${copy.nodes('all').length} node connections)`);
  t.is(await client.get('app:k'), 'v2');
  await client.set('app:k', 'x');
}

for (const scaleReads of ['slave', 'all'] as const) {
  test.serial(`ioredis 5, scaleReads '${scaleReads}': a cached read right after a write sees it while replicas lag`, async (t) => {
    // 'all' picks master or replica at random per read: a few keys make it meet a replica.
    await check(t, new Cluster(cluster.ports.slice(0, 3).map((port) => ({ host: '127.0.0.1', port })), { scaleReads }) as unknown as AppCluster, scaleReads);
  });
}

test.serial("ioredis 5, scaleReads 'slave', near cache: a near hit right after a write sees it while replicas lag", async (t) => {
  await check(t, new Cluster(cluster.ports.slice(0, 3).map((port) => ({ host: '127.0.0.1', port })), { scaleReads: 'slave' }) as unknown as AppCluster, 'slave', true);
});

test.serial("ioredis 6, scaleReads 'slave': a cached read right after a write sees it while replicas lag", async (t) => {
  await check(t, new Cluster6(cluster.ports.slice(0, 3).map((port) => ({ host: '127.0.0.1', port })), { scaleReads: 'slave' }) as unknown as AppCluster, 'slave');
});
