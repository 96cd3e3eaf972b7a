/**
 * The example blog: Express 5 + Nunjucks + Sequelize, cached by cacheops.
 *
 * - automatic caching by profile: the post list, its count, single posts;
 * - manual caching: the authors page asks for it with `cacheops: { ... }`;
 * - a `cached_as` fragment: the category sidebar of the home page;
 * - a cached view: the post page (`cachedViewAs`), replayed until a write
 *   to a post, comment, category or author invalidates it;
 * - a form editing a post (POST, then redirect): the edit shows at once;
 * - /invalidations: what each write invalidated and dropped, live (server-sent events).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import nunjucks from 'nunjucks';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
// In an application: import { installCacheops, type Cacheops } from 'sequelize-cacheops';
import { installCacheops, type Cacheops } from '../src/index';
import { defineModels, seed, type BlogModels } from './models';
import { countSql, invalidationHtml, InvalidationLog, panel, viewRendered, watch } from './panel';

export interface ExampleOptions {
  /** Redis URL (default: REDIS_URL, else redis://127.0.0.1:6379). */
  readonly redisUrl?: string;
  /** Key prefix, so that several runs or tests do not share cache entries (default: EXAMPLE_PREFIX, else cacheops-example:). */
  readonly prefix?: string;
  /** SQLite file (default: in memory). */
  readonly storage?: string;
}

/** The SQLite file `npm start` uses, so that the `cacheops` command can open the same data: EXAMPLE_DB, else one in the temp dir. */
export function exampleDatabase(): string {
  return process.env['EXAMPLE_DB'] ?? join(tmpdir(), 'cacheops-example.sqlite');
}

/** The models and the cacheops installation, nothing more: no tables created, no rows, no invalidation. */
export interface ExampleInstallation {
  readonly sequelize: Sequelize;
  readonly cacheops: Cacheops;
  readonly models: BlogModels;
}

export interface Example {
  readonly app: express.Express;
  readonly sequelize: Sequelize;
  readonly cacheops: Cacheops;
  readonly models: BlogModels;
  /** The latest invalidations (the /invalidations page). */
  readonly log: InvalidationLog;
  close(): Promise<void>;
}

type Done = (err: unknown, result?: unknown) => void;

function nunjucksEnv(app: express.Express, cacheops: Cacheops, m: BlogModels): nunjucks.Environment {
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(join(__dirname, 'views')), { autoescape: true });
  env.express(app);
  app.set('view engine', 'njk');
  cacheops.addNunjucksExtension(env);
  // An async filter, so the sidebar's query runs only when its fragment is rendered.
  env.addFilter('postCounts', (category: ModelStatic<Model>, done: Done) => {
    category.findAll({ include: [{ model: m.Post, attributes: ['id'], where: { published: true }, required: false }], order: [['name', 'ASC']] })
      .then((rows) => done(null, rows.map((c) => ({ name: c.get('name'), count: (c.get('Posts') as unknown[]).length }))), done);
  }, true);
  return env;
}

const idOf = (req: Request): number => Number.parseInt(String(req.params['id']), 10);

/**
 * Opens the example's database and installs cacheops on it. The server calls
 * it and then seeds; `cli-app.ts` (the module for `cacheops --app`) calls it alone.
 */
export function openExample(options: ExampleOptions = {}): ExampleInstallation {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: options.storage ?? ':memory:', logging: countSql });
  const models = defineModels(sequelize);
  const cacheops = installCacheops(sequelize, {
    redis: options.redisUrl ?? process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379',
    prefix: options.prefix ?? process.env['EXAMPLE_PREFIX'] ?? 'cacheops-example:',
    profiles: {
      Post: { ops: ['get', 'fetch', 'count'], timeout: 600 },
      Category: { ops: 'all', timeout: 900 },
      Comment: { ops: ['fetch', 'count'], timeout: 600 },
      Author: { ops: 'just_enable', timeout: 300 }, // manual caching only: see /authors
    },
    // On a file, a write by another program (the sqlite3 shell, a script) is seen too:
    // SQLite's data_version is polled and every cached table invalidated on a change.
    changeStream: true,
  });
  return { sequelize, cacheops, models };
}

export async function createExample(options: ExampleOptions = {}): Promise<Example> {
  const { sequelize, cacheops, models } = openExample(options);
  const { Category, Author, Post, Comment } = models;
  try {
    await seed(sequelize, models);
    // The database is new on every start: whatever an earlier run cached is stale.
    await cacheops.invalidateAll();
  } catch (error) {
    // A failed start leaves nothing open (no Redis connection, no database handle).
    await cacheops.close().catch(() => undefined);
    await sequelize.close().catch(() => undefined);
    throw error;
  }
  const log = new InvalidationLog();
  watch(cacheops, log);
  // `cacheops stats` reports the hit counts applications flush: the example flushes every few seconds.
  const flusher = setInterval(() => { void cacheops.flushStats(); }, 3000);
  flusher.unref();

  const app = express();
  app.set('etag', false); // the panel makes every response body different
  app.locals['Category'] = Category;
  app.locals['Post'] = Post;
  nunjucksEnv(app, cacheops, models);
  app.use('/static', express.static(join(__dirname, 'public'), { maxAge: '1h' }));
  app.use(panel());
  app.use(express.urlencoded({ extended: false }));

  // Automatic caching: both reads are in Post's profile (fetch, count).
  app.get('/', async (_req: Request, res: Response) => {
    const where = { published: true };
    const posts = await Post.findAll({ where, include: [Category, Author], order: [['id', 'ASC']] });
    const total = await Post.count({ where });
    res.render('index.njk', { posts: posts.map((p) => p.get({ plain: true })), total });
  });

  // A cached view: the page is replayed (no handler, no SQL) until a write to a sample.
  app.get('/posts/:id', cacheops.cachedViewAs(Post, Comment, Category, Author, { timeout: 300 })(async (req: Request, res: Response) => {
    viewRendered(); // the handler runs only on a miss: the panel lists it
    const post = await Post.findByPk(idOf(req), { include: [Category, Author, Comment] });
    if (!post) {
      res.status(404).render('missing.njk');
      return;
    }
    res.render('post.njk', { post: post.get({ plain: true }) });
  }));

  app.get('/posts/:id/edit', async (req: Request, res: Response) => {
    const post = await Post.findByPk(idOf(req));
    if (!post) {
      res.status(404).render('missing.njk');
      return;
    }
    res.render('edit.njk', { post: post.get({ plain: true }) });
  });

  // The write invalidates the post page, the list and the sidebar; the redirect shows the new title at once.
  app.post('/posts/:id/edit', async (req: Request, res: Response) => {
    const post = await Post.findByPk(idOf(req), { cacheops: false } as object);
    if (!post) {
      res.status(404).render('missing.njk');
      return;
    }
    const body = req.body as Record<string, unknown>;
    const title = String(body['title'] ?? '').trim();
    if (!title) {
      res.status(400).render('edit.njk', { post: { ...post.get({ plain: true }), title }, error: 'A title is required.' });
      return;
    }
    await post.update({ title, body: String(body['body'] ?? ''), published: body['published'] === 'on' });
    res.redirect(303, `/posts/${post.get('id')}`);
  });

  // Manual caching: Author's profile caches nothing by itself; these queries ask for it.
  app.get('/authors', async (_req: Request, res: Response) => {
    const authors = await Author.findAll({ include: [{ model: Post, attributes: ['id', 'title'] }], order: [['name', 'ASC']], cacheops: { timeout: 120 } } as object);
    const comments = await Comment.findAndCountAll({ cacheops: { ops: ['count'] } } as object);
    res.render('authors.njk', { authors: authors.map((a) => a.get({ plain: true })), comments: comments.count });
  });

  // What writes invalidated: the latest entries, then new ones as they happen (server-sent events).
  app.get('/invalidations', (_req: Request, res: Response) => {
    res.render('invalidations.njk', { entries: log.entries.map((e) => ({ ...e, html: invalidationHtml(e) })) });
  });
  app.get('/invalidations/events', (req: Request, res: Response) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' });
    res.write(': live\n\n');
    const off = log.subscribe((e) => {
      res.write(`data: ${JSON.stringify({ at: e.at, request: e.request, html: invalidationHtml(e) })}\n\n`);
    });
    req.on('close', off);
  });

  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).type('text/plain').send(`error: ${err instanceof Error ? err.message : String(err)}`);
  });

  return {
    app, sequelize, cacheops, models, log,
    async close() {
      clearInterval(flusher);
      await cacheops.flushStats();
      await cacheops.close();
      await sequelize.close();
    },
  };
}
