/**
 * The blog schema most tests share: Category, Author, Post (paranoid),
 * Tag, PostTag (through), Comment.
 */
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { installCacheops, type Cacheops, type CacheopsConfig } from '../../src/index';
import { makeSequelize, redisUrl, uniquePrefix, type Dialect } from './env';

export interface Blog {
  readonly sequelize: Sequelize;
  readonly cacheops: Cacheops;
  readonly Category: ModelStatic<Model>;
  readonly Author: ModelStatic<Model>;
  readonly Post: ModelStatic<Model>;
  readonly Tag: ModelStatic<Model>;
  readonly PostTag: ModelStatic<Model>;
  readonly Comment: ModelStatic<Model>;
  close(): Promise<void>;
}

export function defineBlog(sequelize: Sequelize) {
  const Category = sequelize.define('Category', {
    name: { type: DataTypes.STRING, allowNull: false },
  });
  const Author = sequelize.define('Author', {
    name: DataTypes.STRING,
    email: { type: DataTypes.STRING, unique: true },
    active: { type: DataTypes.BOOLEAN, defaultValue: true },
  });
  const Post = sequelize.define('Post', {
    title: DataTypes.STRING,
    body: DataTypes.TEXT,
    views: { type: DataTypes.INTEGER, defaultValue: 0 },
    rating: DataTypes.DECIMAL(10, 2),
    published: { type: DataTypes.BOOLEAN, defaultValue: false },
    publishedAt: DataTypes.DATE,
    day: DataTypes.DATEONLY,
    meta: DataTypes.JSON,
    blob: DataTypes.BLOB,
    big: DataTypes.BIGINT,
  }, { paranoid: true });
  const Tag = sequelize.define('Tag', { name: { type: DataTypes.STRING, unique: true } });
  const PostTag = sequelize.define('PostTag', { weight: { type: DataTypes.INTEGER, defaultValue: 1 } });
  const Comment = sequelize.define('Comment', { text: DataTypes.STRING, approved: { type: DataTypes.BOOLEAN, defaultValue: false } });
  Post.belongsTo(Category, { foreignKey: 'categoryId' });
  Category.hasMany(Post, { foreignKey: 'categoryId' });
  Post.belongsTo(Author, { foreignKey: 'authorId' });
  Author.hasMany(Post, { foreignKey: 'authorId' });
  Post.belongsToMany(Tag, { through: PostTag, foreignKey: 'postId', otherKey: 'tagId' });
  Tag.belongsToMany(Post, { through: PostTag, foreignKey: 'tagId', otherKey: 'postId' });
  Post.hasMany(Comment, { foreignKey: 'postId' });
  Comment.belongsTo(Post, { foreignKey: 'postId' });
  return { Category, Author, Post, Tag, PostTag, Comment };
}

/** A fresh blog on a dialect with cacheops installed ('*': all ops unless config says otherwise). */
export async function makeBlog(dialect: Dialect, file: string, config: Partial<CacheopsConfig> = {}, label = 'blog'): Promise<Blog> {
  const sequelize = await makeSequelize(dialect, file);
  const models = defineBlog(sequelize);
  await sequelize.sync({ force: true });
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl,
    prefix: uniquePrefix(label),
    profiles: { '*': { ops: 'all' } },
    ...config,
  });
  return {
    sequelize, cacheops, ...models,
    async close() {
      await cacheops.invalidateAll();
      await cacheops.close();
      await sequelize.close();
    },
  };
}
