import test from 'ava';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { makeBlog, type Blog } from '../helpers/models';
import { dialects } from '../helpers/env';
import { LEASE_WAIT_MS } from '../../src/core/read-through';

async function listen(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

async function withApp(build: (app: express.Express) => void, run: (url: string) => Promise<void>): Promise<void> {
  const app = express();
  build(app);
  const server = await listen(createServer(app));
  try {
    await run(server.url);
  } finally {
    await server.close();
  }
}

/** Runs a test body on a fresh blog (SQLite unless a dialect is given). */
function onBlog(title: string, body: (t: import('ava').ExecutionContext, blog: Blog) => Promise<void>, dialect: (typeof DIALECTS)[number] = 'sqlite'): void {
  test.serial(`${dialect}: ${title}`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'views');
    try {
      await body(t, blog);
    } finally {
      await blog.close();
    }
  });
}
const DIALECTS = dialects();

onBlog('a second GET replays status, headers and body without calling the handler', async (t, blog) => {
  let calls = 0;
  const reads: boolean[] = [];
  blog.cacheops.on('read', (e) => { if (e.op === 'view') reads.push(e.hit); });
  await withApp((app) => {
    app.get('/page', blog.cacheops.cachedView({ timeout: 60 })((req: Request, res: Response) => {
      calls += 1;
      res.status(203).set('X-Custom', 'yes').type('text/plain').send(`page ${calls} ${req.query['q'] ?? ''}`);
    }));
  }, async (url) => {
    const first = await fetch(`${url}/page?q=1`);
    const firstBody = await first.text();
    const second = await fetch(`${url}/page?q=1`);
    t.is(calls, 1, 'the handler ran once');
    t.is(second.status, 203);
    t.is(await second.text(), firstBody);
    t.is(firstBody, 'page 1 1');
    t.is(second.headers.get('x-custom'), 'yes');
    t.is(second.headers.get('content-type'), first.headers.get('content-type'));
    t.is(second.headers.get('etag'), first.headers.get('etag'));
    t.deepEqual(reads, [false, true]);
    // The query string is part of the key.
    t.is(await (await fetch(`${url}/page?q=2`)).text(), 'page 2 2');
    t.is(calls, 2);
  });
});

onBlog('POST, 404 and handler errors are not cached', async (t, blog) => {
  let posts = 0;
  let missing = 0;
  let failing = 0;
  await withApp((app) => {
    app.post('/form', blog.cacheops.cachedView()((_req: Request, res: Response) => { posts += 1; res.send(`posted ${posts}`); }));
    app.get('/missing', blog.cacheops.cachedView()((_req: Request, res: Response) => { missing += 1; res.status(404).send('nope'); }));
    app.get('/boom', blog.cacheops.cachedView()(async () => { failing += 1; throw new Error('boom'); }));
    app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => { res.status(500).send(`error: ${err.message}`); });
  }, async (url) => {
    t.is(await (await fetch(`${url}/form`, { method: 'POST' })).text(), 'posted 1');
    t.is(await (await fetch(`${url}/form`, { method: 'POST' })).text(), 'posted 2');
    const a = await fetch(`${url}/missing`);
    const b = await fetch(`${url}/missing`);
    t.is(a.status, 404);
    t.is(b.status, 404);
    t.is(missing, 2);
    const e1 = await fetch(`${url}/boom`);
    const e2 = await fetch(`${url}/boom`);
    t.is(e1.status, 500);
    t.is(await e2.text(), 'error: boom');
    t.is(failing, 2);
  });
});

for (const dialect of DIALECTS) {
  onBlog('cachedViewAs is invalidated by a write matching its sample, not by another', async (t, blog) => {
    const { Post } = blog;
    await Post.create({ title: 'one', categoryId: null, views: 1 });
    let calls = 0;
    await withApp((app) => {
      app.get('/popular', blog.cacheops.cachedViewAs({ model: Post, where: { views: 1 } }, { timeout: 120 })(async (_req: Request, res: Response) => {
        calls += 1;
        const posts = await Post.findAll({ where: { views: 1 }, order: [['id', 'ASC']], cacheops: false } as object);
        res.json(posts.map((p) => p.get('title')));
      }));
    }, async (url) => {
      t.deepEqual(await (await fetch(`${url}/popular`)).json(), ['one']);
      t.deepEqual(await (await fetch(`${url}/popular`)).json(), ['one']);
      t.is(calls, 1);
      await Post.create({ title: 'other', views: 2 });
      t.deepEqual(await (await fetch(`${url}/popular`)).json(), ['one'], 'a non-matching write keeps the page');
      t.is(calls, 1);
      await Post.create({ title: 'two', views: 1 });
      t.deepEqual(await (await fetch(`${url}/popular`)).json(), ['one', 'two'], 'a matching write drops the page');
      t.is(calls, 2);
      const post = await Post.findOne({ where: { title: 'one' } });
      await post!.update({ title: 'uno' });
      t.deepEqual(await (await fetch(`${url}/popular`)).json(), ['uno', 'two']);
      t.is(calls, 3);
    });
  }, dialect);
}

onBlog('invalidate(path, ...extra) drops exactly one entry; cachedView ignores writes', async (t, blog) => {
  let calls = 0;
  const view = blog.cacheops.cachedView({ timeout: 60, extra: (req) => req.headers['x-lang'] ?? 'en' })((req: Request, res: Response) => {
    calls += 1;
    res.send(`${req.originalUrl} ${String(req.headers['x-lang'] ?? 'en')} #${calls}`);
  });
  await withApp((app) => { app.get('/news', view); }, async (url) => {
    const get = async (lang?: string): Promise<string> => (await fetch(`${url}/news`, { headers: lang ? { 'x-lang': lang } : {} })).text();
    t.is(await get(), '/news en #1');
    t.is(await get('fr'), '/news fr #2');
    t.is(await get(), '/news en #1');
    t.is(await get('fr'), '/news fr #2');
    await blog.Post.create({ title: 'unrelated' });
    t.is(await get(), '/news en #1', 'a timeout-only view is not invalidated by writes');
    t.true(await view.invalidate('/news', 'fr'));
    t.false(await view.invalidate('/news', 'fr'), 'nothing left to drop');
    t.is(await get('fr'), '/news fr #3');
    t.is(await get(), '/news en #1', 'the other entry stays');
    t.true(await view.invalidate('/news', 'en'));
    t.is(await get(), '/news en #4');
  });
});

onBlog('HEAD is served from the GET entry; a HEAD miss stores nothing; ETag gives 304', async (t, blog) => {
  let calls = 0;
  await withApp((app) => {
    app.get('/h', blog.cacheops.cachedView()((_req: Request, res: Response) => { calls += 1; res.send(`body ${calls}`); }));
  }, async (url) => {
    const head1 = await fetch(`${url}/h`, { method: 'HEAD' });
    t.is(head1.status, 200);
    t.is(calls, 1);
    t.is(await (await fetch(`${url}/h`)).text(), 'body 2', 'the HEAD miss did not store an empty body');
    const head2 = await fetch(`${url}/h`, { method: 'HEAD' });
    t.is(calls, 2, 'HEAD hit');
    t.is(head2.headers.get('content-length'), String('body 2'.length));
    const etag = head2.headers.get('etag');
    t.truthy(etag);
    const conditional = await fetch(`${url}/h`, { headers: { 'if-none-match': etag! } });
    t.is(conditional.status, 304);
    t.is(calls, 2);
  });
});

onBlog('responses setting cookies or no-store are not cached; next() passes through', async (t, blog) => {
  let cookie = 0;
  let noStore = 0;
  let nexted = 0;
  await withApp((app) => {
    app.get('/cookie', blog.cacheops.cachedView()((_req: Request, res: Response) => { cookie += 1; res.cookie('sid', String(cookie)).send('c'); }));
    app.get('/nostore', blog.cacheops.cachedView()((_req: Request, res: Response) => { noStore += 1; res.set('Cache-Control', 'no-store').send('n'); }));
    app.get('/next', blog.cacheops.cachedView()((_req: Request, _res: Response, next?: (err?: unknown) => void) => { nexted += 1; next?.(); }));
    app.get('/next', (_req, res) => { res.send(`fallback ${nexted}`); });
  }, async (url) => {
    for (let i = 0; i < 2; i += 1) {
      await fetch(`${url}/cookie`);
      await fetch(`${url}/nostore`);
      t.is(await (await fetch(`${url}/next`)).text(), `fallback ${i + 1}`);
    }
    t.is(cookie, 2);
    t.is(noStore, 2);
    t.is(nexted, 2);
  });
});

onBlog('a plain Node http handler is cached too (writeHead + write + end)', async (t, blog) => {
  let calls = 0;
  const handler = blog.cacheops.cachedView({ timeout: 30 })((req: IncomingMessage, res: ServerResponse) => {
    calls += 1;
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Plain': '1' });
    res.write('hé ');
    res.end(Buffer.from(`${req.url} ${calls}`));
  });
  const server = await listen(createServer((req, res) => { void handler(req, res); }));
  try {
    const a = await fetch(`${server.url}/x`);
    const b = await fetch(`${server.url}/x`);
    t.is(await a.text(), 'hé /x 1');
    t.is(await b.text(), 'hé /x 1');
    t.is(b.headers.get('x-plain'), '1');
    t.is(b.headers.get('content-type'), 'text/plain; charset=utf-8');
    t.is(calls, 1);
  } finally {
    await server.close();
  }
});

onBlog('with the lock, concurrent misses render once; a non-cacheable response frees the lock', async (t, blog) => {
  let calls = 0;
  let status = 500;
  await withApp((app) => {
    app.get('/slow', blog.cacheops.cachedView({ lock: true })(async (_req: Request, res: Response) => {
      calls += 1;
      await new Promise((r) => setTimeout(r, 150));
      res.status(status).send(`slow ${calls}`);
    }));
  }, async (url) => {
    const started = Date.now();
    await fetch(`${url}/slow`);
    await fetch(`${url}/slow`);
    t.true(Date.now() - started < 3000, 'the second request did not wait for a stale lock');
    t.is(calls, 2);
    status = 200;
    const bodies = await Promise.all([1, 2, 3, 4].map(async () => (await fetch(`${url}/slow`)).text()));
    t.deepEqual(new Set(bodies), new Set(['slow 3']));
    t.is(calls, 3);
  });
});

/** How long the handler below renders (ms): long enough that a second request arrives while the first holds the lease. */
const RENDER_MS = 150;

onBlog('a response that is not stored gives its lease back through its token: a concurrent waiter goes on at once', async (t, blog) => {
  const renders: { start: number; end: number }[] = [];
  await withApp((app) => {
    app.get('/busy', blog.cacheops.cachedView({ lock: true })(async (_req: Request, res: Response) => {
      const render = { start: Date.now(), end: 0 };
      renders.push(render);
      await new Promise((r) => setTimeout(r, RENDER_MS));
      render.end = Date.now();
      res.status(503).send('busy');
    }));
  }, async (url) => {
    const first = fetch(`${url}/busy`).then((r) => r.text());
    // The second request arrives while the first renders, so it finds the first's lease and waits.
    await new Promise((r) => setTimeout(r, RENDER_MS / 3));
    const second = fetch(`${url}/busy`).then((r) => r.text());
    await Promise.all([first, second]);
    t.is(renders.length, 2, 'a 503 is not stored: each request rendered');
    const [a, b] = renders as [{ start: number; end: number }, { start: number; end: number }];
    t.true(b.start >= a.end, 'the second request waited for the lease of the first');
    // Held on, the lease would keep the waiter until LEASE_WAIT_MS (2000 ms) had passed since it arrived.
    t.true(b.start - a.end < LEASE_WAIT_MS / 2, `the waiter rendered ${b.start - a.end} ms after the first response, not after the lease wait (${LEASE_WAIT_MS} ms)`);
  });
});

test('bad options are refused with CacheopsConfigError', async (t) => {
  const blog = await makeBlog('sqlite', __filename, {}, 'views');
  try {
    t.throws(() => blog.cacheops.cachedView({ timeout: -1 }), { message: /cachedView\.timeout/ });
    t.throws(() => blog.cacheops.cachedView({ nope: 1 } as object), { message: /cachedView\.nope: unknown option/ });
    t.throws(() => blog.cacheops.cachedViewAs({ timeout: 5 }), { message: /at least one sample/ });
  } finally {
    await blog.close();
  }
});
