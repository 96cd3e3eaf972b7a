/**
 * "Did you mean": the edit distance against a plain recursive definition
 * (fast-check), and the suggestions the configuration's errors make.
 */
import test from 'ava';
import fc from 'fast-check';
import { DataTypes, Sequelize } from 'sequelize';
import { installCacheops, CacheopsConfigError, type CacheopsConfig } from '../../src/index';
import { closest, editDistance } from '../../src/core/suggest';
import { redisUrl } from '../helpers/env';

/** Optimal string alignment distance, straight from its definition (slow, small inputs only). */
function reference(a: string, b: string): number {
  const d = (i: number, j: number): number => {
    if (i === 0) return j;
    if (j === 0) return i;
    let best = Math.min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
    if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d(i - 2, j - 2) + 1);
    return best;
  };
  return d(a.length, b.length);
}

test('editDistance equals the definition, and a limit only caps it', (t) => {
  const word = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), maxLength: 6 });
  fc.assert(fc.property(word, word, fc.nat(4), (a, b, limit) => {
    const exact = reference(a, b);
    return editDistance(a, b) === exact && editDistance(a, b, limit) === Math.min(exact, limit + 1);
  }), { numRuns: 500 });
  t.pass();
});

test('closest: typos within two edits (one for short words), case ignored; nothing for far words', (t) => {
  t.is(closest('timout', ['ops', 'timeout', 'lock']), 'timeout');
  t.is(closest('tiemout', ['ops', 'timeout', 'lock']), 'timeout', 'a swap is one edit');
  t.is(closest('opz', ['ops', 'timeout', 'lock']), 'ops');
  t.is(closest('LOCK', ['ops', 'timeout', 'lock']), 'lock');
  t.is(closest('bogus', ['ops', 'timeout', 'lock']), undefined);
  t.is(closest('ab', ['ops']), undefined, 'two edits are too many for a short word');
});

test('configuration errors suggest the key or op meant, and list only the keys valid where they were given', (t) => {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  sequelize.define('Post', { n: DataTypes.INTEGER });
  const cases: [unknown, string, RegExp][] = [
    [{ profiles: { Post: { timout: 5 } } }, 'profiles.Post.timout', /unknown profile option: did you mean "timeout"\?/],
    [{ defaults: { cacheOnsave: true } }, 'defaults.cacheOnsave', /did you mean "cacheOnSave"\?/],
    [{ profiles: { Post: { ops: 'fech' } } }, 'profiles.Post.ops', /unknown op "fech": did you mean "fetch"\?/],
    [{ profiles: { Post: { ops: ['get', 'al'] } } }, 'profiles.Post.ops', /unknown op "al": did you mean "all"\?/],
    [{ degradeOnFailur: true }, 'degradeOnFailur', /unknown option: did you mean "degradeOnFailure"\?/],
    [{ redisTimout: 100 }, 'redisTimout', /did you mean "redisTimeout"\?/],
    [{ timout: 60 }, 'timout', /"timeout" is a profile option, given in defaults or profiles.<Model>/],
    [{ profiles: { Post: { near: { maxEntrie: 5 } } } }, 'profiles.Post.near.maxEntrie', /did you mean "maxEntries"\? \(known: maxEntries, maxBytes\)$/],
    [{ bogus: 1 }, 'bogus', /^bogus: unknown option \(known: redis, /],
  ];
  for (const [config, key, message] of cases) {
    const error = t.throws(() => installCacheops(sequelize, { redis: redisUrl, ...(config as CacheopsConfig) }), { instanceOf: CacheopsConfigError }, key);
    t.is((error as CacheopsConfigError).key, key);
    t.regex(error!.message, message);
  }
  const profileError = t.throws(() => installCacheops(sequelize, { redis: redisUrl, profiles: { Post: { tiemout: 1 } } } as never));
  t.notRegex(profileError!.message, /redisTimeout|degradeOnFailure/, 'a profile key error lists profile keys only');
});
