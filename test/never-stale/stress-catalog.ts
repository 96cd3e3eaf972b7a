/**
 * The vocabulary of the never-stale tests: the few hot rows every process
 * fights over, the reads (as serializable descriptions, so that another
 * process can replay exactly what a worker ran), the writes, and the check
 * that every cached value equals the database.
 */
import { Model, Op, type FindOptions, type Sequelize, type Transaction } from 'sequelize';
import type { Cacheops } from '../../src/index';
import { defineBlog } from '../helpers/models';

export type BlogModels = ReturnType<typeof defineBlog>;

export const HOT = { posts: [1, 2, 3, 4], categories: [1, 2], authors: [1, 2], tags: [1, 2, 3] } as const;
export const TITLES = ['alpha', 'beta', 'gamma'] as const;

/** Options of a read; `{ cacheops: false }` runs it uncached. */
type ReadOptions = FindOptions & { cacheops?: false };
export const NOCACHE = { cacheops: false } as const;

/** A small seeded generator (mulberry32): each worker's choices are reproducible. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(random: () => number, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

const arg = (args: readonly number[], i: number): number => args[i] ?? 0;
const byId = [['id', 'ASC']] as [string, string][];

/** The reads, by kind; args are small integers so a description is plain JSON. */
export const READS = {
  postByPk: (m: BlogModels, a: readonly number[], o: ReadOptions) => m.Post.findByPk(arg(a, 0), o),
  postsIn: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { id: [arg(a, 0), arg(a, 1)] }, order: byId }),
  postsByViews: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { views: arg(a, 0) }, order: byId }),
  postsByTitle: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { title: TITLES[arg(a, 0)] ?? 'alpha' }, order: byId }),
  postsPublishedInCategory: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { categoryId: arg(a, 0), published: arg(a, 1) === 1 }, order: byId }),
  postsIdOrViews: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { [Op.or]: [{ id: arg(a, 0) }, { views: arg(a, 1) }] }, order: byId }),
  postsWithoutCategory: (m: BlogModels, _a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { categoryId: null }, order: byId }),
  postsOfCategoryWithCategory: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { categoryId: arg(a, 0) }, include: [m.Category], order: byId }),
  postsOfAuthorWithTags: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({ ...o, where: { authorId: arg(a, 0) }, include: [m.Tag], order: [['id', 'ASC'], [m.Tag, 'id', 'ASC']] }),
  postsWithApprovedComments: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAll({
      ...o, where: { id: [arg(a, 0), arg(a, 1)] }, include: [{ model: m.Comment, where: { approved: true } }],
      order: [['id', 'ASC'], [m.Comment, 'id', 'ASC']],
    }),
  countPublished: (m: BlogModels, a: readonly number[], o: ReadOptions) => m.Post.count({ ...o, where: { published: arg(a, 0) === 1 } }),
  countInCategory: (m: BlogModels, a: readonly number[], o: ReadOptions) => m.Post.count({ ...o, where: { categoryId: arg(a, 0) } }),
  maxViewsInCategory: (m: BlogModels, a: readonly number[], o: ReadOptions) => m.Post.max('views', { ...o, where: { categoryId: arg(a, 0) } }),
  commentsOfPost: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Comment.findAll({ ...o, where: { postId: arg(a, 0) }, order: byId }),
  tagsOfPost: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Tag.findAll({ ...o, include: [{ model: m.Post, where: { id: arg(a, 0) } }], order: [['id', 'ASC'], [m.Post, 'id', 'ASC']] }),
  postGetTags: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    (m.Post.build({ id: arg(a, 0) }, { isNewRecord: false }) as Model & { getTags(o: ReadOptions): Promise<Model[]> })
      .getTags({ ...o, order: byId }),
  categoryWithPosts: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Category.findByPk(arg(a, 0), { ...o, include: [m.Post], order: [[m.Post, 'id', 'ASC']] }),
  authorWithPublishedPosts: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Author.findByPk(arg(a, 0), { ...o, include: [{ model: m.Post, where: { published: true }, required: false }], order: [[m.Post, 'id', 'ASC']] }),
  findAndCountInCategory: (m: BlogModels, a: readonly number[], o: ReadOptions) =>
    m.Post.findAndCountAll({ ...o, where: { categoryId: arg(a, 0) }, order: byId, limit: 10 }),
} as const;

export type ReadKind = keyof typeof READS;

/** A read as plain data: which kind, with which arguments. */
export interface ReadDescription {
  readonly kind: ReadKind;
  readonly args: readonly number[];
}

export function runRead(m: BlogModels, d: ReadDescription, o: ReadOptions = {}): Promise<unknown> {
  return READS[d.kind](m, d.args, o);
}

/** A random read on the hot rows. */
export function randomRead(r: () => number): ReadDescription {
  const kind = pick(r, Object.keys(READS) as ReadKind[]);
  const post = pick(r, HOT.posts);
  const cat = pick(r, HOT.categories);
  const args: Record<ReadKind, number[]> = {
    postByPk: [post], postsIn: [post, pick(r, HOT.posts)], postsByViews: [Math.floor(r() * 4)],
    postsByTitle: [Math.floor(r() * TITLES.length)], postsPublishedInCategory: [cat, r() < 0.5 ? 1 : 0],
    postsIdOrViews: [post, Math.floor(r() * 4)], postsWithoutCategory: [], postsOfCategoryWithCategory: [cat],
    postsOfAuthorWithTags: [pick(r, HOT.authors)], postsWithApprovedComments: [post, pick(r, HOT.posts)],
    countPublished: [r() < 0.5 ? 1 : 0], countInCategory: [cat], maxViewsInCategory: [cat], commentsOfPost: [post],
    tagsOfPost: [post], postGetTags: [post], categoryWithPosts: [cat], authorWithPublishedPosts: [pick(r, HOT.authors)],
    findAndCountInCategory: [cat],
  };
  return { kind, args: args[kind] };
}

// ---- writes -----------------------------------------------------------------

export interface WriteContext {
  readonly m: BlogModels;
  readonly r: () => number;
  readonly transaction: Transaction | undefined;
}

type Tagged = Model & {
  addTag(tag: number, o: object): Promise<unknown>;
  removeTag(tag: number, o: object): Promise<unknown>;
  setTags(tags: number[], o: object): Promise<unknown>;
  setCategory(id: number | null, o: object): Promise<unknown>;
};

const small = (r: () => number): number => Math.floor(r() * 4);
const flag = (r: () => number): boolean => r() < 0.5;

/** The writes, concentrated on the hot rows. Each reads what it needs through the cache, as an application would. */
export const WRITES: Record<string, (c: WriteContext) => Promise<unknown>> = {
  async instanceUpdate({ m, r, transaction }) {
    const post = await m.Post.findByPk(pick(r, HOT.posts), { transaction });
    if (post) await post.update({ views: small(r), published: flag(r), title: pick(r, TITLES) }, { transaction });
  },
  massUpdateByIds: ({ m, r, transaction }) =>
    m.Post.update({ published: flag(r), views: small(r) }, { where: { id: [pick(r, HOT.posts), pick(r, HOT.posts)] }, transaction }),
  massUpdateByCategory: ({ m, r, transaction }) =>
    m.Post.update({ views: small(r), title: pick(r, TITLES) }, { where: { categoryId: pick(r, HOT.categories) }, transaction }),
  incrementViews: ({ m, r, transaction }) =>
    m.Post.increment('views', { by: flag(r) ? 1 : -1, where: { id: pick(r, HOT.posts) }, transaction }),
  async instanceIncrement({ m, r, transaction }) {
    const post = await m.Post.findByPk(pick(r, HOT.posts), { transaction });
    if (post) await post.increment('views', { by: flag(r) ? 1 : -1, transaction });
  },
  async moveCategory({ m, r, transaction }) {
    const post = await m.Post.findByPk(pick(r, HOT.posts), { transaction });
    if (post) await (post as Tagged).setCategory(r() < 0.2 ? null : pick(r, HOT.categories), { transaction });
  },
  createComment: ({ m, r, transaction }) =>
    m.Comment.create({ postId: pick(r, HOT.posts), text: pick(r, TITLES), approved: flag(r) }, { transaction }),
  destroyComments: ({ m, r, transaction }) =>
    m.Comment.destroy({ where: { postId: pick(r, HOT.posts), approved: flag(r) }, transaction }),
  approveComments: ({ m, r, transaction }) =>
    m.Comment.update({ approved: flag(r) }, { where: { postId: pick(r, HOT.posts) }, transaction }),
  createPost: ({ m, r, transaction }) =>
    m.Post.create({ title: 'tmp', views: small(r), published: flag(r), categoryId: pick(r, HOT.categories), authorId: pick(r, HOT.authors) }, { transaction }),
  async destroyTmpPost({ m, r, transaction }) {
    const post = await m.Post.findOne({ where: { title: 'tmp' }, transaction, ...NOCACHE });
    if (post) await post.destroy({ transaction, force: flag(r) });
  },
  async toggleDeleted({ m, r, transaction }) {
    const post = await m.Post.findByPk(pick(r, HOT.posts), { paranoid: false, transaction, ...NOCACHE });
    if (!post) return;
    if (post.get('deletedAt')) await m.Post.restore({ where: { id: post.get('id') as number }, transaction });
    else await post.destroy({ transaction });
  },
  addTag: ({ m, r, transaction }) =>
    (m.Post.build({ id: pick(r, HOT.posts) }, { isNewRecord: false }) as Tagged).addTag(pick(r, HOT.tags), { transaction }),
  removeTag: ({ m, r, transaction }) =>
    (m.Post.build({ id: pick(r, HOT.posts) }, { isNewRecord: false }) as Tagged).removeTag(pick(r, HOT.tags), { transaction }),
  setTags: ({ m, r, transaction }) =>
    (m.Post.build({ id: pick(r, HOT.posts) }, { isNewRecord: false }) as Tagged).setTags(HOT.tags.filter(() => flag(r)), { transaction }),
  renameCategory: ({ m, r, transaction }) =>
    m.Category.update({ name: pick(r, TITLES) }, { where: { id: pick(r, HOT.categories) }, transaction }),
  toggleAuthor: ({ m, r, transaction }) =>
    m.Author.update({ active: flag(r) }, { where: { id: pick(r, HOT.authors) }, transaction }),
};

/** The rows every test starts from: posts 1-4 spread over two categories, two authors and three tags. */
export async function seed(m: BlogModels): Promise<void> {
  await m.Category.bulkCreate(HOT.categories.map((id) => ({ id, name: `c${id}` })));
  await m.Author.bulkCreate(HOT.authors.map((id) => ({ id, name: `a${id}`, email: `a${id}@example.org` })));
  await m.Tag.bulkCreate(HOT.tags.map((id) => ({ id, name: `t${id}` })));
  await m.Post.bulkCreate(HOT.posts.map((id) => ({
    id, title: TITLES[id % TITLES.length], views: id % 2, published: id % 2 === 0,
    categoryId: HOT.categories[id % 2], authorId: HOT.authors[Math.floor(id / 3)],
  })));
  await m.PostTag.bulkCreate([{ postId: 1, tagId: 1 }, { postId: 2, tagId: 1 }, { postId: 2, tagId: 2 }]);
  await m.Comment.bulkCreate([{ postId: 1, text: 'x', approved: true }, { postId: 2, text: 'y', approved: false }]);
}

/** A sequelize with its id sequences moved past the seeded ids (PostgreSQL keeps them at 1 after explicit ids). */
export async function fixSequences(sequelize: Sequelize, m: BlogModels): Promise<void> {
  if (sequelize.getDialect() !== 'postgres') return;
  for (const model of [m.Category, m.Author, m.Tag, m.Post, m.Comment]) {
    const table = model.getTableName() as string;
    await sequelize.query(`SELECT setval(pg_get_serial_sequence('"${table}"', 'id'), (SELECT MAX(id) FROM "${table}"))`, { ...NOCACHE });
  }
}

// ---- the check -------------------------------------------------------------------

/** A value in a form that compares equal exactly when the results are equal. */
export function canon(value: unknown): string {
  const plain = (v: unknown): unknown => {
    if (v instanceof Model) return plain(v.get({ plain: true }));
    if (Array.isArray(v)) return v.map(plain);
    if (v instanceof Date) return `date:${v.toISOString()}`;
    if (Buffer.isBuffer(v)) return `hex:${v.toString('hex')}`;
    if (typeof v === 'bigint') return `bigint:${v}`;
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(Object.keys(o).sort().map((k) => [k, plain(o[k])]));
    }
    return v;
  };
  return JSON.stringify(plain(value)) ?? 'undefined';
}

export interface CheckResult {
  /** Distinct reads replayed. */
  readonly checked: number;
  /** Of them, answered from the cache (what the check actually covers). */
  readonly hits: number;
  /** Of the hits, those whose cached value differs from the database. */
  readonly stale: number;
  readonly details: readonly string[];
}

/**
 * Replays each read twice, through the cache (a hit if it is cached) and with
 * `{ cacheops: false }`, and compares. Run it once nothing writes any more.
 */
export async function checkReads(m: BlogModels, cacheops: Cacheops, reads: Iterable<ReadDescription>): Promise<CheckResult> {
  const unique = new Map<string, ReadDescription>();
  for (const d of reads) unique.set(JSON.stringify(d), d);
  let hits = 0;
  let stale = 0;
  const details: string[] = [];
  for (const [key, d] of unique) {
    const before = cacheops.stats().hits;
    const cached = canon(await runRead(m, d));
    const hit = cacheops.stats().hits > before;
    const fresh = canon(await runRead(m, d, NOCACHE));
    if (hit) hits += 1;
    if (cached !== fresh) {
      stale += 1;
      details.push(`${key}${hit ? '' : ' (miss!)'}\n  cached:   ${cached}\n  database: ${fresh}`);
    }
  }
  return { checked: unique.size, hits, stale, details };
}
