/**
 * A private redis-server (private-redis.ts) for one test file's ACL users:
 * started before the file's tests, stopped after them, with an admin client
 * (the default user) and `createUser`, which makes a user anew with the given
 * ACL rules and answers its URL.
 */
import test from 'ava';
import IORedis from 'ioredis';
import { startPrivateRedis, type PrivateRedis } from './private-redis';

export interface AclRedis {
  /** The private server, once started. */
  readonly redis: PrivateRedis;
  /** A client as the default user (every command), once started. */
  readonly admin: IORedis;
  /** Makes user `name` anew (password `secret`) with these space-separated rules, empties the ACL LOG, and answers the user's URL. */
  createUser(name: string, rules: string): Promise<string>;
}

/** Registers the file's hooks that start and stop the server. */
export function useAclRedis(): AclRedis {
  let redis: PrivateRedis | undefined;
  let admin: IORedis | undefined;

  test.before(async () => {
    redis = await startPrivateRedis();
    admin = new IORedis(redis.url);
  });

  test.after.always(async () => {
    admin?.disconnect();
    await redis?.stop();
  });

  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the private redis-server is not started (used outside the tests)');
    return value;
  };
  return {
    get redis() { return started(redis); },
    get admin() { return started(admin); },
    async createUser(name, rules) {
      const client = started(admin);
      await client.call('ACL', 'DELUSER', name);
      await client.call('ACL', 'SETUSER', name, 'on', '>secret', ...rules.split(' '));
      await client.call('ACL', 'LOG', 'RESET');
      return `redis://${name}:secret@127.0.0.1:${started(redis).port}`;
    },
  };
}
