/**
 * A foreign writer against the example blog (`npm start` runs it on a SQLite
 * file with `changeStream: true`): a post's page and the home page are cached,
 * another program (the `sqlite3` shell, or a separate Node process when the
 * shell is not installed) changes the post's title in the same file, and the
 * pages show the new title within the stream's bound, with no request to the
 * application in between.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startExample } from '../../templates-example/server';
import { redisUrl, uniquePrefix } from '../helpers/env';
import { hasSqliteShell as hasShell, shellWrite } from '../helpers/sqlite-shell';

function foreignWrite(file: string, sql: string): void {
  if (hasShell) {
    shellWrite(file, sql);
    return;
  }
  const script = `const s = require('sqlite3'); const db = new s.Database(process.argv[1]); db.exec(process.argv[2], (e) => { if (e) { console.error(e); process.exit(1); } db.close(); });`;
  execFileSync(process.execPath, ['-e', script, file, sql], { cwd: join(__dirname, '..', '..') });
}

test('a write by another program to the example\'s SQLite file shows on its cached pages within 1 s', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-example-foreign-'));
  const running = await startExample(0, { redisUrl, prefix: uniquePrefix('example-foreign'), storage: join(dir, 'blog.sqlite') });
  try {
    await running.example.cacheops.changeStreamReady();
    const page = async (path: string): Promise<string> => (await fetch(`${running.url}${path}`)).text();
    const title = String((await running.example.models.Post.findByPk(1, { cacheops: false } as never))!.get('title'));
    // Cached: the second load of each page is a hit (the panel counts no SQL).
    for (const path of ['/posts/1', '/']) {
      t.true((await page(path)).includes(title), `${path} shows the title`);
      t.regex(await page(path), /data-stat="sql">0</, `${path} is served from the cache the second time`);
    }
    const renamed = `Renamed by another program ${process.pid}`;
    const wrote = Date.now();
    foreignWrite(join(dir, 'blog.sqlite'), `UPDATE Posts SET title = '${renamed}' WHERE id = 1;`);
    let seenAfter = Number.NaN;
    while (Date.now() - wrote < 5000) {
      if ((await page('/posts/1')).includes(renamed) && (await page('/')).includes(renamed)) {
        seenAfter = Date.now() - wrote;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    t.log(`the foreign write showed on both pages ${seenAfter} ms after it (${hasShell ? 'sqlite3 shell' : 'node process'})`);
    t.true(seenAfter <= 1000, `seen after ${seenAfter} ms`);
  } finally {
    await running.example.cacheops.invalidateAll();
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
