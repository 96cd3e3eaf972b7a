/**
 * The Redis commands cacheops sends, by feature, and the start-up check that a
 * restricted Redis user (ACL) may send them all.
 *
 * The list covers what the library sends itself, what its Lua scripts call
 * (an ACL applies to `redis.call` inside a script as to a command sent
 * directly), and what ioredis sends on connecting (INFO for its ready check).
 * A test keeps it in step with lua/*.lua and with docs/redis-security.md.
 *
 * The check is one EVAL of a script that asks `redis.acl_check_cmd` (Redis 7)
 * about a sample of each command on a key of the installation, so it changes
 * nothing. A user lacking a command gets one CacheopsPermissionError naming
 * every missing command, instead of a failed call per request later.
 */
import { CacheopsPermissionError } from './errors';
import type { RedisClient } from './redis';

/** The channel client-side caching invalidation messages arrive on (the near cache subscribes to it). */
export const TRACKING_CHANNEL = '__redis__:invalidate';

/** A command with sample arguments; `K` stands for a key of the installation, `R` for the prefix registry key. */
type Sample = readonly string[];

const K = '\0key';
const R = '\0registry';
const SHA = '0'.repeat(40);

/**
 * Every query, store and invalidation: the script commands (EVALSHA, EVAL when
 * the script is not loaded yet), what the scripts call, and the plain calls of
 * simple caching, function and view caches, invalidateAll and flushStats.
 */
const CORE: readonly Sample[] = [
  ['evalsha', SHA, '1', K], ['eval', 'return 0', '1', K],
  // Called inside the scripts (lua/*.lua); some also directly.
  ['get', K], ['mget', K], ['getrange', K, '0', '1'], ['set', K, 'v'], ['del', K], ['exists', K], ['type', K],
  ['expire', K, '1'], ['pexpire', K, '1'], ['ttl', K], ['pttl', K], ['incr', K],
  ['hget', K, 'f'], ['hmget', K, 'f'], ['hset', K, 'f', 'v'], ['hincrby', K, 'f', '1'],
  ['sadd', K, 'm'], ['srem', K, 'm'], ['smembers', K], ['sunion', K],
  // invalidateAll (SCAN and UNLINK, never KEYS), flushStats (MULTI/HINCRBY/EXEC).
  ['scan', '0'], ['unlink', K], ['multi'], ['exec'],
  // ioredis's ready check on each connection.
  ['info'],
];

/** A `prefix` function: the prefixes it returns are registered in a set outside any prefix. */
const PREFIX_REGISTRY: readonly Sample[] = [['sadd', R, 'p'], ['smembers', R]];

/** The near cache's two connections: client tracking redirected to a subscriber, read scripts, heartbeat. */
const NEAR: readonly Sample[] = [
  ['client', 'id'], ['client', 'tracking', 'on'], ['subscribe', TRACKING_CHANNEL], ['ping'], ['mget', K], ['evalsha', SHA, '1', K],
];

/** A channel of the installation (`writes: 'stream'`: the change stream tells waiting writers there). */
const C = '\0channel';

/** `writes: 'stream'`: the consumer's invalidation announces transactions (PUBLISH); every process listens. */
const STREAM_WRITES: readonly Sample[] = [['publish', C, 'ids'], ['subscribe', C]];

/** `cacheops stats` and `cacheops reap-conjs` (invalidate runs what the library runs). */
const CLI: readonly Sample[] = [
  ['scan', '0'], ['dbsize'], ['info'], ['type', K], ['scard', K], ['sscan', K, '0'], ['hgetall', K], ['smembers', K],
  ['evalsha', SHA, '1', K], ['eval', 'return 0', '1', K],
];

/** A Redis Cluster client: ioredis reads the slot map, checks the cluster state and names its slot-map connection. */
const CLUSTER: readonly Sample[] = [['cluster', 'slots'], ['cluster', 'info'], ['client', 'setname', 'n']];

export interface Features {
  /** The installation's key prefix ('' when none). */
  readonly prefix: string;
  /** The prefix is a function: its registry key is needed too. */
  readonly prefixFunction?: boolean;
  readonly near?: boolean;
  readonly cli?: boolean;
  readonly cluster?: boolean;
  /** `writes: 'stream'`: its channel (`<prefix>cacheops:{0}:stream:done:<db>`). */
  readonly streamWrites?: boolean;
  /** The database number selected on connecting (SELECT is needed when it is not 0). */
  readonly db?: number;
}

/** The samples a configuration needs, deduplicated, with its keys filled in. */
export function samplesFor(features: Features): string[][] {
  const key = `${features.prefix}cacheops:{0}:q:acl-check`;
  const channel = `${features.prefix}cacheops:{0}:stream:done:acl-check`;
  const groups = [CORE, features.prefixFunction ? PREFIX_REGISTRY : [], features.near ? NEAR : [], features.cli ? CLI : [], features.cluster ? CLUSTER : [],
    features.streamWrites ? STREAM_WRITES : [], features.db ? [['select', String(features.db)]] : []];
  const seen = new Set<string>();
  const out: string[][] = [];
  for (const sample of groups.flat()) {
    const filled = sample.map((a) => (a === K ? key : a === R ? 'cacheops:prefixes' : a === C ? channel : a));
    const id = filled.join(' ');
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(filled);
  }
  return out;
}

/** The ACL name of a sample: the command, or `command|subcommand` for container commands. */
export function aclName(sample: readonly string[]): string {
  const [cmd, sub] = sample;
  return cmd === 'client' || cmd === 'cluster' ? `${cmd}|${sub ?? ''}` : cmd!;
}

/** The command names a configuration needs, sorted (ACL names). */
export function commandsFor(features: Features): string[] {
  return [...new Set(samplesFor(features).map(aclName))].sort();
}

/**
 * The `ACL SETUSER` rules of a user that can run cacheops with these features
 * and nothing more: its key patterns, the near cache's channel, its commands.
 */
export function aclRules(features: Features): string {
  const glob = (text: string): string => text.replace(/[*?[\]\\]/g, '\\$&');
  const keys = [`~${glob(features.prefix)}cacheops:*`];
  if (features.prefixFunction) keys.splice(0, 1, '~*cacheops:*');
  const channels = ['resetchannels', ...(features.near ? [`&${TRACKING_CHANNEL}`] : []),
    ...(features.streamWrites ? [`&${features.prefixFunction ? '*' : glob(features.prefix)}cacheops:{0}:stream:done:*`] : [])].join(' ');
  return `resetkeys ${keys.join(' ')} ${channels} -@all ${commandsFor(features).map((c) => `+${c}`).join(' ')}`;
}

/*
 * ARGV: per sample, its argument count then its arguments. Returns the
 * (1-based) numbers of the samples the user may not run. An unknown command
 * (an older server) counts as permitted: nothing will send it there.
 */
const CHECK_SCRIPT = `
local denied, i, n = {}, 1, 0
while i <= #ARGV do
  n = n + 1
  local count = tonumber(ARGV[i])
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(ARGV, i + 1, i + count))
  if ok and not allowed then denied[#denied + 1] = n end
  i = i + count + 1
end
return denied`;

export type CheckResult =
  | { readonly kind: 'ok' }
  /** The server cannot tell (no ACL: Redis before 7), or Redis did not answer: nothing is known. */
  | { readonly kind: 'unknown' }
  | { readonly kind: 'missing'; readonly error: CacheopsPermissionError };

function isNoPerm(error: unknown): boolean {
  return /^NOPERM\b/.test(String((error as { message?: unknown })?.message ?? ''));
}

/** Whether an error is Redis refusing a command or key to the user (not an outage). */
export function isPermissionError(error: unknown): boolean {
  const message = String((error as { message?: unknown })?.message ?? '');
  return isNoPerm(error) || message.includes("can't run this command") || message.includes('No permissions to access a key');
}

/** The indices of the samples the user may not run; 'eval' when not even the check may run; undefined when Redis cannot tell. */
async function deniedSamples(client: RedisClient, samples: readonly (readonly string[])[]): Promise<number[] | 'eval' | undefined> {
  try {
    const denied = await client.eval(CHECK_SCRIPT, 0, ...samples.flatMap((s) => [String(s.length), ...s]));
    return Array.isArray(denied) ? denied.map((n) => Number(n) - 1) : undefined;
  } catch (error) {
    return isNoPerm(error) ? 'eval' : undefined;
  }
}

/** Whether the user may run this command (with these keys): undefined when Redis cannot tell. */
export async function mayRun(client: RedisClient, sample: readonly string[]): Promise<boolean | undefined> {
  const denied = await deniedSamples(client, [sample]);
  return denied === undefined ? undefined : denied !== 'eval' && denied.length === 0;
}

/** Asks Redis whether the connection's user may send every command of `features`; never rejects. */
export async function checkPermissions(client: RedisClient, features: Features, endpoint: string): Promise<CheckResult> {
  const samples = samplesFor(features);
  const denied = await deniedSamples(client, samples);
  if (denied === undefined) return { kind: 'unknown' };
  // Not even the check may run: EVAL is missing, so every script fails too.
  const missing = denied === 'eval' ? ['eval'] : [...new Set(denied.map((i) => aclName(samples[i] ?? ['?'])))].sort();
  if (missing.length === 0) return { kind: 'ok' };
  return { kind: 'missing', error: new CacheopsPermissionError(missing, endpoint, commandsFor(features)) };
}
