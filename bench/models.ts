/**
 * The benchmark schema: Category, Author, Post (tables prefixed `bench_` and
 * a tag of this run, so a shared database is not disturbed and two benches
 * at once do not write each other's tables), and a deterministic seed.
 */
import { randomBytes } from 'node:crypto';
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';

/** This run's table prefix: `bench_<tag>_` (the bench drops its tables at the end). */
export const RUN_TABLES = `bench_${randomBytes(3).toString('hex')}_`;

export type BenchDialect = 'sqlite' | 'postgres' | 'mariadb';

/** The MariaDB database of the bench (created when missing). */
const MARIADB_DATABASE = 'cacheops_bench';

export interface BenchModels {
  readonly Category: ModelStatic<Model>;
  readonly Author: ModelStatic<Model>;
  readonly Post: ModelStatic<Model>;
}

export const SIZES = { posts: 1000, categories: 50, authors: 20 } as const;

/**
 * A Sequelize on the dialect: SQLite in memory (or on `storage`, a file), database
 * `test` on the local PostgreSQL, or `cacheops_bench` on the local MariaDB.
 */
export function openSequelize(dialect: BenchDialect, storage = ':memory:'): Sequelize {
  if (dialect === 'sqlite') return new Sequelize({ dialect: 'sqlite', storage, logging: false });
  if (dialect === 'mariadb') {
    return new Sequelize(MARIADB_DATABASE, process.env['MYSQL_USER'] ?? 'root', process.env['MYSQL_PASSWORD'] ?? '', {
      host: process.env['MYSQL_HOST'] ?? '127.0.0.1',
      port: Number(process.env['MYSQL_PORT'] ?? 3306),
      dialect: 'mysql',
      logging: false,
    });
  }
  return new Sequelize('test', 'postgres', '', {
    host: process.env['PGHOST'] ?? '127.0.0.1',
    port: Number(process.env['PGPORT'] ?? 5432),
    dialect: 'postgres',
    logging: false,
  });
}

/** Whether the server of a dialect answers (the bench skips it with a note when it does not); creates the MariaDB database. */
export async function serverReachable(dialect: BenchDialect): Promise<string | undefined> {
  if (dialect === 'sqlite') return undefined;
  if (dialect === 'mariadb') {
    const admin = new Sequelize('', process.env['MYSQL_USER'] ?? 'root', process.env['MYSQL_PASSWORD'] ?? '', {
      host: process.env['MYSQL_HOST'] ?? '127.0.0.1', port: Number(process.env['MYSQL_PORT'] ?? 3306), dialect: 'mysql', logging: false,
    });
    try {
      await admin.query(`CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\``);
    } catch (error) {
      return (error as Error).message;
    } finally {
      await admin.close().catch(() => undefined);
    }
  }
  const s = openSequelize(dialect);
  try {
    await s.authenticate();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await s.close().catch(() => undefined);
  }
}

/** The models; `tables` prefixes the table names (the write section uses tables of its own). */
export function defineModels(sequelize: Sequelize, tables = RUN_TABLES): BenchModels {
  const Category = sequelize.define('Category', {
    name: { type: DataTypes.STRING, allowNull: false },
    slug: DataTypes.STRING,
  }, { tableName: `${tables}categories` });
  const Author = sequelize.define('Author', {
    name: DataTypes.STRING,
    email: DataTypes.STRING,
    active: { type: DataTypes.BOOLEAN, defaultValue: true },
  }, { tableName: `${tables}authors` });
  const Post = sequelize.define('Post', {
    title: DataTypes.STRING,
    body: DataTypes.TEXT,
    views: { type: DataTypes.INTEGER, defaultValue: 0 },
    published: { type: DataTypes.BOOLEAN, defaultValue: false },
    publishedAt: DataTypes.DATE,
  }, {
    tableName: `${tables}posts`,
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

/** Drops the bench tables (PostgreSQL, MariaDB: leave the shared database as it was). */
export async function dropTables(models: BenchModels): Promise<void> {
  await models.Post.drop();
  await models.Author.drop();
  await models.Category.drop();
}
