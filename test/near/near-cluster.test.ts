/**
 * The near cache on a Redis Cluster (near/cluster-tracking.ts), on a private
 * three-master cluster: the near cache's checks (helpers/near-checks.ts) and
 * the never-stale differential property with the near cache on in two
 * installations (the checks also with an ioredis 6 RESP3 cluster client); a slot moving to another master while its value is held,
 * and a master restarting, never make a read stale.
 *
 *   FC_CLUSTER_NEAR_STEPS  differential steps per dialect (default 150; a step costs more on a cluster: one invalidation script per hash tag)
 */
import test from 'ava';
import IORedis, { type Cluster } from 'ioredis';
import { Cluster as Cluster6 } from 'ioredis6';
import type { Model } from 'sequelize';
import type { ClusterTracker } from '../../src/near/cluster-tracking';
import { keySlot } from '../../src/near/key-slot';
import { makePair, nearReady, until } from '../helpers/near';
import { registerNearChecks, warm, type KillTracking } from '../helpers/near-checks';
import { startPrivateCluster, type PrivateCluster } from '../helpers/private-cluster';
import { Resharder } from '../helpers/reshard';
import { registerDifferential } from '../never-stale/differential-run';

const STEPS = Number(process.env['FC_CLUSTER_NEAR_STEPS'] ?? 150);

let cluster: PrivateCluster | undefined;
const clusterClient = (): Cluster => cluster!.client();

test.before(async () => {
  cluster = await startPrivateCluster();
});

test.after.always(async () => {
  await cluster?.stop();
});

const trackerOf = (cacheops: { core: { near?: { tracker: unknown } } }): ClusterTracker => cacheops.core.near!.tracker as ClusterTracker;
const title = (m: Model | null): unknown => m?.get('title');

/** Kills the tracking connection of one master only: the whole near cache must still be flushed. */
const killOnOneMaster: KillTracking = async (cacheops, victim) => {
  const [key, tracker] = [...trackerOf(cacheops).nodes][0]!;
  const id = victim === 'subscriber' ? tracker.subscriberId : tracker.readerId;
  if (id === undefined) throw new Error(`no ${victim} id on ${key}`);
  const node = new IORedis(Number(key.split(':')[1]), '127.0.0.1');
  try {
    await node.client('KILL', 'ID', id);
  } finally {
    node.disconnect();
  }
};

test.serial('cluster: the key slot is the one the cluster computes', async (t) => {
  const node = new IORedis(cluster!.ports[0]!, '127.0.0.1');
  try {
    const keys = ['', 'a', 'foo', 'p:cacheops:{7}:q:abc', '{}x', 'x{}{y}', '{{a}}', 'é{ü}', 'naïve', 'cacheops:near-probe:{12}:ff'];
    for (let i = 0; i < 200; i += 1) keys.push(`k${i}{${i % 7 ? i : ''}}${'é'.repeat(i % 3)}`);
    for (const key of keys) t.is(keySlot(key), Number(await node.call('CLUSTER', 'KEYSLOT', key)), key);
  } finally {
    node.disconnect();
  }
});

registerNearChecks(__filename, 'cluster: ', clusterClient, killOnOneMaster);
// ioredis 6 speaks RESP3 by default: the tracking connections on each master pin RESP2 (tracking.ts).
registerNearChecks(__filename, 'cluster, ioredis 6 RESP3: ', () => new Cluster6(cluster!.ports.map((port) => ({ host: '127.0.0.1', port }))), killOnOneMaster);
registerDifferential({ file: __filename, label: 'cluster: ', steps: (near) => (near ? STEPS : 0), seeds: 1, client: clusterClient });

/** The value keys on the cluster (this file's cluster holds nothing else). */
async function valueKeys(client: Cluster): Promise<string[]> {
  const keys = await Promise.all(client.nodes('master').map((n) => n.keys('*cacheops:{*}:q:*')));
  return keys.flat();
}

test.serial('cluster: a slot moving to another master while its value is held never serves it stale, and near hits resume', async (t) => {
  const pair = await makePair('sqlite', __filename, {}, 'nearslot', clusterClient);
  const resharder = new Resharder(cluster!.ports);
  const client = clusterClient();
  try {
    const { a, b } = pair;
    const p = await a.Post.create({ title: 's0', views: 3 });
    const id = p.get('id') as number;
    const tracker = trackerOf(a.cacheops);
    const delays: number[] = [];
    for (let round = 1; round <= 3; round += 1) {
      await pair.a.cacheops.invalidateAll();
      await warm(a.cacheops, () => a.Post.findByPk(id));
      const keys = await valueKeys(client);
      t.is(keys.length, 1, keys.join(', '));
      const slot = keySlot(keys[0]!);
      const from = await resharder.ownerOf(slot);
      const to = (from + 1) % 3;
      const entries = a.cacheops.core.near!.entries;
      t.true(entries > 0);
      const flushes = tracker.topologyFlushes;
      const start = process.hrtime.bigint();
      const moved = await resharder.move(slot, to);
      t.true(moved.keys >= 1); // the value and the keys sharing its hash tag (conj, index, epochs)
      // The migration deleted the key on its old master, which reported it.
      await until('the migrated key to leave the near cache', () => a.cacheops.core.near!.entries < entries, 2000);
      delays.push(Number(process.hrtime.bigint() - start) / 1e6);
      // B writes: its invalidation goes to the new master.
      await b.Post.update({ title: `s${round}` }, { where: { id } });
      t.is(title(await a.Post.findByPk(id)), `s${round}`, `A sees B's write after slot ${slot} moved ${from} -> ${to}`);
      await until('the new slot map', () => tracker.topologyFlushes > flushes, 5000);
      await nearReady(a.cacheops);
      await warm(a.cacheops, () => a.Post.findByPk(id));
      t.is(title(await a.Post.findByPk(id)), `s${round}`);
      await b.Post.update({ title: `s${round}b` }, { where: { id } });
      await until('B\'s invalidation through the new master', async () => title(await a.Post.findByPk(id)) === `s${round}b`, 2000);
      await a.Post.update({ title: `s${round}` }, { where: { id } });
      t.is(title(await a.Post.findByPk(id)), `s${round}`, 'A\'s own write after the move');
    }
    t.log(`from the start of a slot's move to the held value leaving the near cache: ${delays.map((d) => d.toFixed(1)).join(', ')} ms`);
  } finally {
    resharder.close();
    client.disconnect();
    await pair.close();
  }
});

test.serial('cluster: a master restarting empty flushes the near cache; reads stay fresh and near hits resume', async (t) => {
  const warnings: string[] = [];
  const pair = await makePair('sqlite', __filename, { logger: (m) => warnings.push(m) }, 'nearrestart', clusterClient);
  const client = clusterClient();
  try {
    const { a, b } = pair;
    const p = await a.Post.create({ title: 'r0', views: 4 });
    const id = p.get('id') as number;
    await warm(a.cacheops, () => a.Post.findByPk(id));
    const [key] = await valueKeys(client);
    const owner = trackerOf(a.cacheops).nodes.get(client.slots[keySlot(key!)]![0]!);
    t.truthy(owner);
    const index = cluster!.ports.indexOf(Number(client.slots[keySlot(key!)]![0]!.split(':')[1]));
    cluster!.kill(index);
    await until('tracking to notice the loss', () => !trackerOf(a.cacheops).active, 5000);
    t.is(a.cacheops.core.near!.entries, 0, 'flushed');
    await cluster!.restart(index);
    // The restarted master is empty; B's write (its invalidation finds nothing to delete there) must still be seen.
    await b.Post.update({ title: 'r1' }, { where: { id } });
    await until('A to read B\'s write', async () => title(await a.Post.findByPk(id)) === 'r1', 10_000);
    await nearReady(a.cacheops);
    await warm(a.cacheops, () => a.Post.findByPk(id));
    await b.Post.update({ title: 'r2' }, { where: { id } });
    await until('B\'s invalidation after the restart', async () => title(await a.Post.findByPk(id)) === 'r2', 2000);
    t.true(warnings.some((w) => w.includes('tracking connection lost')), warnings.join('\n'));
  } finally {
    client.disconnect();
    await pair.close();
  }
});

test.serial('cluster with replicas: a manual failover (the old master demoted, still up) never serves a held value stale', async (t) => {
  const replicated = await startPrivateCluster({ replicas: 1 });
  const client = (): Cluster => replicated.client();
  const nodes = replicated.ports.map((port) => new IORedis(port, '127.0.0.1', { maxRetriesPerRequest: 1 }));
  const roleOf = async (n: IORedis): Promise<unknown[]> => (await n.call('ROLE')) as unknown[];
  let pair: Awaited<ReturnType<typeof makePair>> | undefined;
  let probe: Cluster | undefined;
  try {
    // Every replica has synced with its master (a manual failover needs it).
    const synced = (): Promise<number> => until('replicas in sync', async () => {
      const roles = await Promise.all(nodes.map(roleOf));
      return roles.filter((r) => r[0] === 'slave' && r[3] === 'connected').length === 3;
    }, 20_000);
    await synced();
    probe = client();
    pair = await makePair('sqlite', __filename, {}, 'nearfailover', client);
    const { a, b } = pair;
    const p = await a.Post.create({ title: 'f0', views: 5 });
    const id = p.get('id') as number;
    // One round: masters refuse to vote for a second failover of the same shard within twice the node timeout.
    for (let round = 1; round <= 1; round += 1) {
      await synced();
      await warm(a.cacheops, () => a.Post.findByPk(id));
      const [key] = await valueKeys(probe);
      const roles = await Promise.all(nodes.map(roleOf));
      const owners = await Promise.all(nodes.map(async (n, i) => roles[i]![0] === 'master' && (await n.exists(key!).catch(() => 0)) === 1));
      const ownerPort = replicated.ports[owners.indexOf(true)];
      const replica = nodes[roles.findIndex((r) => r[0] === 'slave' && Number(r[2]) === ownerPort)];
      if (!replica) throw new Error(`no replica of ${ownerPort} (${key}): ${JSON.stringify(roles)}`);
      await replica.call('CLUSTER', 'FAILOVER');
      await until(`the replica to take over (round ${round})`, async () => (await roleOf(replica))[0] === 'master', 20_000);
      // Another process's write: seen as soon as its invalidation reaches A (as without a failover).
      await b.Post.update({ title: `f${round}` }, { where: { id } });
      await until('B\'s write after the failover', async () => title(await a.Post.findByPk(id)) === `f${round}`, 2000);
      // A's own write: seen right away.
      await nearReady(a.cacheops);
      await warm(a.cacheops, () => a.Post.findByPk(id));
      await a.Post.update({ title: `f${round}a` }, { where: { id } });
      t.is(title(await a.Post.findByPk(id)), `f${round}a`, `own write after failover ${round}`);
    }
  } finally {
    probe?.disconnect();
    await pair?.close();
    for (const n of nodes) n.disconnect();
    await replicated.stop();
  }
});
