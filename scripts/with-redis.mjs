// Runs a command with REDIS_URL pointing at a live Redis: the one given, the
// local default if it answers, or a private redis-server on a free port that
// is stopped afterwards. Usage: node scripts/with-redis.mjs <command> [args...]
import { spawn, spawnSync } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ping = (port, host = '127.0.0.1') => new Promise((resolve) => {
  const socket = connect({ port, host });
  const done = (ok) => { socket.destroy(); resolve(ok); };
  socket.setTimeout(500, () => done(false));
  socket.on('error', () => done(false));
  socket.on('connect', () => socket.write('PING\r\n'));
  socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
});

const freePort = () => new Promise((resolve) => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
});

let child;
let dir;
if (!process.env.REDIS_URL) {
  if (await ping(6379)) {
    process.env.REDIS_URL = 'redis://127.0.0.1:6379';
  } else {
    const which = spawnSync('sh', ['-c', 'command -v redis-server']);
    if (which.status !== 0) {
      console.error('No Redis: set REDIS_URL, start one on 127.0.0.1:6379, or install redis-server.');
      process.exit(2);
    }
    const port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'cacheops-redis-'));
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !(await ping(port)); i++) await new Promise((r) => setTimeout(r, 50));
    process.env.REDIS_URL = `redis://127.0.0.1:${port}`;
    console.error(`started a private redis-server on port ${port}`);
  }
}
const [cmd, ...args] = process.argv.slice(2);
const run = spawn(cmd, args, { stdio: 'inherit', shell: process.platform === 'win32' });
const stop = () => { if (child) child.kill(); if (dir) rmSync(dir, { recursive: true, force: true }); };
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { run.kill(sig); });
run.on('exit', (code, signal) => { stop(); process.exit(code ?? (signal ? 1 : 0)); });
