/**
 * An Express app of the RealWorld shape on the association bench's schema
 * (bench/assoc-models.ts): its pages read the way RealWorld implementations
 * with Sequelize do, an N+1 per listed article (tags, favorites count,
 * favorited, following). The current user is fixed (`CURRENT`).
 */
import express, { type Request, type Response } from 'express';
import type { Model } from 'sequelize';
import type { AssocModels } from '../assoc-models';

export const CURRENT = 7;

type Methods = Record<string, (...args: unknown[]) => Promise<unknown>>;
const m = (instance: Model): Methods => instance as unknown as Methods;

async function profile(author: Model, me: Model): Promise<Record<string, unknown>> {
  return { username: author.get('username'), bio: author.get('bio'), following: await m(author)['hasFollower']!(me) };
}

async function article(a: Model, me: Model): Promise<Record<string, unknown>> {
  const [tags, favoritesCount, favorited, author] = await Promise.all([
    m(a)['getTagList']!({ joinTableAttributes: [] }) as Promise<Model[]>,
    m(a)['countUsers']!(),
    m(a)['hasUser']!(me),
    profile(a.get('author') as Model, me),
  ]);
  return {
    slug: a.get('slug'), title: a.get('title'), description: a.get('description'),
    tagList: tags.map((t) => t.get('name')), favoritesCount, favorited, author,
  };
}

export function createApp(models: AssocModels): express.Express {
  const { User, Article, Tag, Comment, Favorite } = models;
  const app = express();
  app.use(express.json());
  const me = (): Promise<Model | null> => User.findByPk(CURRENT);
  const bySlug = (slug: string): Promise<Model | null> => Article.findOne({ where: { slug }, include: [{ model: User, as: 'author' }] });
  const route = (fn: (req: Request, res: Response) => Promise<unknown>) => (req: Request, res: Response): void => {
    fn(req, res).then((body) => { res.json(body); }, (error: unknown) => { res.status(500).json({ error: String(error) }); });
  };

  app.get('/api/articles', route(async (req) => {
    const user = (await me())!;
    const limit = Math.min(Number(req.query['limit'] ?? 20), 50);
    const offset = Number(req.query['offset'] ?? 0);
    const { rows, count } = await Article.findAndCountAll({
      include: [{ model: User, as: 'author' }], limit, offset, order: [['createdAt', 'DESC']], distinct: true,
    });
    return { articles: await Promise.all(rows.map((a) => article(a, user))), articlesCount: count };
  }));
  app.get('/api/articles/:slug', route(async (req) => {
    const [user, a] = await Promise.all([me(), bySlug(String(req.params['slug']))]);
    return { article: a ? await article(a, user!) : null };
  }));
  app.get('/api/articles/:slug/comments', route(async (req) => {
    const [user, a] = await Promise.all([me(), bySlug(String(req.params['slug']))]);
    if (!a) return { comments: [] };
    const comments = await m(a)['getComments']!({ include: [{ model: User, as: 'author' }], order: [['createdAt', 'DESC']] }) as Model[];
    return { comments: await Promise.all(comments.map(async (c) => ({ id: c.get('id'), body: c.get('body'), author: await profile(c.get('author') as Model, user!) }))) };
  }));
  app.get('/api/tags', route(async () => ({ tags: (await Tag.findAll({ order: [['name', 'ASC']] })).map((t) => t.get('name')) })));
  app.get('/api/profiles/:username', route(async (req) => {
    const [user, p] = await Promise.all([me(), User.findOne({ where: { username: String(req.params['username']) } })]);
    return { profile: p ? await profile(p, user!) : null };
  }));
  // Writes of the mixed load: favorite / unfavorite, comment.
  app.post('/api/articles/:slug/favorite', route(async (req) => {
    const a = await bySlug(String(req.params['slug']));
    if (!a) return { ok: false };
    const where = { articleId: a.get('id'), userId: CURRENT };
    if (await Favorite.destroy({ where }) === 0) await Favorite.create(where);
    return { ok: true };
  }));
  app.post('/api/articles/:slug/comments', route(async (req) => {
    const a = await bySlug(String(req.params['slug']));
    if (!a) return { ok: false };
    await Comment.create({ articleId: a.get('id'), authorId: CURRENT, body: 'a comment' });
    return { ok: true };
  }));
  return app;
}
