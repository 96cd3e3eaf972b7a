/**
 * The benchmark schema: Category, Author, Post (tables prefixed `bench_`, so
 * a shared PostgreSQL database is not disturbed), and a deterministic seed.
 */
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';

export type BenchDialect = 'sqlite' | 'postgres';

export interface BenchModels {
  readonly Category: ModelStatic<Model>;
  readonly Author: ModelStatic<Model>;
  readonly Post: ModelStatic<Model>;
}

export const SIZES = { posts: 1000, categories: 50, authors: 20 } as const;

/** A Sequelize on the dialect: SQLite in memory, or database `test` on the local PostgreSQL. */
export function openSequelize(dialect: BenchDialect): Sequelize {
  if (dialect === 'sqlite') return new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  return new Sequelize('test', 'postgres', '', {
    host: process.env['PGHOST'] ?? '127.0.0.1',
    port: Number(process.env['PGPORT'] ?? 5432),
    dialect: 'postgres',
    logging: false,
  });
}

/** Whether PostgreSQL answers (the bench skips it with a note when it does not). */
export async function postgresReachable(): Promise<string | undefined> {
  const s = openSequelize('postgres');
  try {
    await s.authenticate();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await s.close().catch(() => undefined);
  }
}

export function defineModels(sequelize: Sequelize): BenchModels {
  const Category = sequelize.define('Category', {
    name: { type: DataTypes.STRING, allowNull: false },
    slug: DataTypes.STRING,
  }, { tableName: 'bench_categories' });
  const Author = sequelize.define('Author', {
    name: DataTypes.STRING,
    email: DataTypes.STRING,
    active: { type: DataTypes.BOOLEAN, defaultValue: true },
  }, { tableName: 'bench_authors' });
  const Post = sequelize.define('Post', {
    title: DataTypes.STRING,
    body: DataTypes.TEXT,
    views: { type: DataTypes.INTEGER, defaultValue: 0 },
    published: { type: DataTypes.BOOLEAN, defaultValue: false },
    publishedAt: DataTypes.DATE,
  }, {
    tableName: 'bench_posts',
    // Filling the cache with 100k "views = N" queries stays quick with an index.
    indexes: [{ fields: ['views'] }, { fields: ['categoryId'] }],
  });
  Post.belongsTo(Category, { foreignKey: 'categoryId' });
  Category.hasMany(Post, { foreignKey: 'categoryId' });
  Post.belongsTo(Author, { foreignKey: 'authorId' });
  Author.hasMany(Post, { foreignKey: 'authorId' });
  return { Category, Author, Post };
}

/** Creates the tables (dropping earlier bench tables) and fills them; run before cacheops is installed. */
export async function seed(models: BenchModels): Promise<void> {
  const { Category, Author, Post } = models;
  await Post.drop().catch(() => undefined);
  await Category.sync({ force: true });
  await Author.sync({ force: true });
  await Post.sync({ force: true });
  await Category.bulkCreate(Array.from({ length: SIZES.categories }, (_, i) => ({ name: `Category ${i + 1}`, slug: `category-${i + 1}` })));
  await Author.bulkCreate(Array.from({ length: SIZES.authors }, (_, i) => ({ name: `Author ${i + 1}`, email: `author${i + 1}@example.org` })));
  const base = Date.UTC(2024, 0, 1);
  const posts = Array.from({ length: SIZES.posts }, (_, i) => ({
    title: `Post number ${i + 1}`,
    body: `Body of post ${i + 1}. `.repeat(8),
    views: (i * 37) % 1000,
    published: i % 3 !== 0,
    publishedAt: new Date(base + i * 3_600_000),
    categoryId: (i % SIZES.categories) + 1,
    authorId: (i % SIZES.authors) + 1,
  }));
  await Post.bulkCreate(posts);
}

/** Drops the bench tables (PostgreSQL: leave the shared database as it was). */
export async function dropTables(models: BenchModels): Promise<void> {
  await models.Post.drop();
  await models.Author.drop();
  await models.Category.drop();
}
