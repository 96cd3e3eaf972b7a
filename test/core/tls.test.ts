/**
 * TLS: queries and the near cache over a `rediss://` URL (the connections
 * cacheops opens itself, near cache included) and over ioredis options with
 * a CA, against a private redis-server that only speaks TLS on its TLS port.
 * The certificates are made here with openssl: a CA and a server certificate
 * for 127.0.0.1 signed by it.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { countSql } from '../helpers/env';
import { makeBlog } from '../helpers/models';
import { nearReady, until } from '../helpers/near';
import { freePort, startPrivateRedis, type PrivateRedis } from '../helpers/private-redis';

const ROOT = join(__dirname, '..', '..');
const TSX = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

let dir: string;
let redis: PrivateRedis | undefined;
let tlsPort: number;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cacheops-tls-'));
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=cacheops test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-extfile', 'san.ext', '-out', 'server.pem');
  tlsPort = await freePort();
  redis = await startPrivateRedis(['--tls-port', String(tlsPort), '--tls-cert-file', join(dir, 'server.pem'),
    '--tls-key-file', join(dir, 'server.key'), '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no']);
});

test.after.always(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test.serial('a rediss:// URL: queries, writes and the near cache over TLS (CA from NODE_EXTRA_CA_CERTS)', async (t) => {
  const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', TSX, join(ROOT, 'test', 'fixtures', 'tls-app.ts')], {
      cwd: ROOT, env: { ...process.env, REDIS_URL: `rediss://127.0.0.1:${tlsPort}`, NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') },
    }, (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
  t.is(run.code, 0, run.stderr);
  const out = JSON.parse(run.stdout) as { read: string[][]; byPk: string; hits: number; nearHits: number; logs: string[] };
  t.deepEqual(out.read, [['one'], ['one'], ['two']], 'the write invalidated');
  t.is(out.byPk, 'two', 'the near cache dropped the invalidated value');
  t.true(out.hits >= 1, 'a hit over TLS');
  t.true(out.nearHits >= 1, 'a near hit, tracked over TLS');
  t.deepEqual(out.logs, []);
});

test.serial('ioredis options with a CA: queries and the near cache over TLS', async (t) => {
  const ca = readFileSync(join(dir, 'ca.pem'));
  const blog = await makeBlog('sqlite', __filename, {
    redis: { host: '127.0.0.1', port: tlsPort, tls: { ca } }, degradeOnFailure: false,
    profiles: { Post: { ops: 'all', near: true } },
  }, 'tls');
  const { cacheops, Post } = blog;
  try {
    await cacheops.ready();
    await nearReady(cacheops);
    const p = await Post.create({ title: 'one' });
    await Post.findAll();
    t.is((await countSql(blog.sequelize, () => Post.findAll())).sql.length, 0, 'a hit over TLS');
    await until('a near hit', async () => {
      const before = cacheops.stats().nearHits;
      await Post.findByPk(p.get('id') as number);
      return cacheops.stats().nearHits > before;
    });
    await p.update({ title: 'two' });
    t.is((await Post.findByPk(p.get('id') as number))?.get('title'), 'two');
  } finally {
    await blog.close();
  }
});
