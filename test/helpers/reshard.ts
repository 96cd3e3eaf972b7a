/**
 * Live resharding of a private cluster (private-cluster.ts), the way
 * `redis-cli --cluster reshard` does it, but slow enough to be met: a slot is
 * set IMPORTING on its new master and MIGRATING on its old one, its keys move
 * a few at a time with MIGRATE (pauses between batches, so multi-key scripts
 * meet a slot whose keys are split between the two: ASK and TRYAGAIN), then
 * every master is told the new owner (MOVED from then on).
 */
import IORedis from 'ioredis';

export interface SlotMove {
  readonly slot: number;
  readonly from: number;
  readonly to: number;
  /** Keys moved. */
  readonly keys: number;
}

export class Resharder {
  private readonly nodes: IORedis[];
  private ids: string[] = [];

  constructor(private readonly ports: readonly number[]) {
    this.nodes = ports.map((port) => new IORedis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 }));
  }

  private async nodeIds(): Promise<string[]> {
    if (this.ids.length === 0) this.ids = await Promise.all(this.nodes.map(async (n) => String(await n.call('CLUSTER', 'MYID'))));
    return this.ids;
  }

  /** The index of the master that owns a slot now. */
  async ownerOf(slot: number): Promise<number> {
    const ids = await this.nodeIds();
    const slots = (await this.nodes[0]!.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
    for (const [start, end, [, , id]] of slots) if (slot >= start && slot <= end) return ids.indexOf(id);
    throw new Error(`slot ${slot} has no owner`);
  }

  async keySlot(key: string): Promise<number> {
    return Number(await this.nodes[0]!.call('CLUSTER', 'KEYSLOT', key));
  }

  /** Opens a slot's migration to another master (IMPORTING there, MIGRATING here); returns the old owner. */
  async open(slot: number, to: number): Promise<number> {
    const ids = await this.nodeIds();
    const from = await this.ownerOf(slot);
    await this.nodes[to]!.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', ids[from]!);
    await this.nodes[from]!.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', ids[to]!);
    return from;
  }

  /** Moves these keys of a migrating slot (MIGRATE ... REPLACE KEYS, as `redis-cli --cluster reshard --cluster-replace`). */
  async migrate(from: number, to: number, keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.nodes[from]!.call('MIGRATE', '127.0.0.1', this.ports[to]!, '', 0, 5000, 'REPLACE', 'KEYS', ...keys);
  }

  /** Moves what is left of a slot, `batch` keys per MIGRATE with `pauseMs` between batches, then hands it over. */
  async finish(slot: number, from: number, to: number, { batch = 3, pauseMs = 15 } = {}): Promise<number> {
    const ids = await this.nodeIds();
    let moved = 0;
    for (;;) {
      const keys = (await this.nodes[from]!.call('CLUSTER', 'GETKEYSINSLOT', slot, batch)) as string[];
      if (keys.length === 0) break;
      await this.migrate(from, to, keys);
      moved += keys.length;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
    // The new owner first, then the old one, then the rest (as redis-cli does).
    await this.nodes[to]!.call('CLUSTER', 'SETSLOT', slot, 'NODE', ids[to]!);
    await this.nodes[from]!.call('CLUSTER', 'SETSLOT', slot, 'NODE', ids[to]!);
    for (const [i, node] of this.nodes.entries()) if (i !== from && i !== to) await node.call('CLUSTER', 'SETSLOT', slot, 'NODE', ids[to]!);
    return moved;
  }

  /** Moves a slot to another master, `batch` keys per MIGRATE with `pauseMs` between batches. */
  async move(slot: number, to: number, options: { batch?: number; pauseMs?: number } = {}): Promise<SlotMove> {
    const owner = await this.ownerOf(slot);
    if (owner === to) return { slot, from: owner, to, keys: 0 };
    const from = await this.open(slot, to);
    return { slot, from, to, keys: await this.finish(slot, from, to, options) };
  }

  close(): void {
    for (const n of this.nodes) n.disconnect();
  }
}
