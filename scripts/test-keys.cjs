// The Redis keys a test run leaves behind. Every test prefix starts with
// `t-<run tag>-` (test/helpers/env.ts uniquePrefix; the tag is TEST_RUN_TAG,
// set once per run by scripts/test-run.mjs), so a run finds and removes its
// own keys on a Redis that other runs use at the same time, in every
// database index, and its members of the `cacheops:prefixes` registry.
'use strict';
const IORedis = require('ioredis');

const REGISTRY = 'cacheops:prefixes';

/** A glob that matches `text` literally. */
const globEscape = (text) => text.replace(/[*?[\]\\]/g, '\\$&');

async function databases(client) {
  const info = await client.info('keyspace');
  return [...info.matchAll(/^db(\d+):keys=(\d+)/gm)].map((m) => Number(m[1]));
}

/**
 * Finds (and with remove: true deletes) every key starting with `start`, in
 * every database, and the registry members starting with it. Returns what was found.
 */
async function sweepKeys(url, start, { remove = false } = {}) {
  const found = [];
  const admin = new IORedis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
  try {
    for (const db of await databases(admin)) {
      const client = db === 0 ? admin : admin.duplicate({ db });
      try {
        let cursor = '0';
        do {
          const [next, keys] = await client.scan(cursor, 'MATCH', `${globEscape(start)}*`, 'COUNT', 1000);
          cursor = next;
          for (const key of keys) found.push(db === 0 ? key : `db${db} ${key}`);
          if (remove && keys.length > 0) await client.unlink(...keys);
        } while (cursor !== '0');
        let scursor = '0';
        do {
          const [next, members] = await client.sscan(REGISTRY, scursor, 'MATCH', `${globEscape(start)}*`, 'COUNT', 1000);
          scursor = next;
          for (const member of members) found.push(`${db === 0 ? '' : `db${db} `}${REGISTRY} member ${member}`);
          if (remove && members.length > 0) await client.srem(REGISTRY, ...members);
        } while (scursor !== '0');
      } finally {
        if (client !== admin) client.disconnect();
      }
    }
  } finally {
    admin.disconnect();
  }
  return found;
}

/**
 * The tag of this test run (TEST_RUN_TAG), made and put in the environment when
 * missing: TEST_DB_RUN (or `dev`) and a random part, so two runs never share it.
 */
function ensureRunTag() {
  if (!process.env.TEST_RUN_TAG) {
    const base = (process.env.TEST_DB_RUN || 'dev').replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 10) || 'dev';
    process.env.TEST_RUN_TAG = `${base}${require('node:crypto').randomBytes(3).toString('hex')}`;
  }
  return process.env.TEST_RUN_TAG;
}

/** Where the keys of this run start (test/helpers/env.ts builds every prefix from it). */
const runKeyStart = (tag) => `t-${tag}-`;

module.exports = { globEscape, sweepKeys, ensureRunTag, runKeyStart };
