/**
 * The schema of the association benchmark, of the RealWorld shape: users
 * (each with one settings row, hasOne), articles (belongsTo their author,
 * hasMany comments, belongsToMany tags and the users who favorited them),
 * and follows (users belongsToMany users). Tables are prefixed with a name of
 * their own, so runs on a shared database never meet.
 */
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';

export interface AssocModels {
  readonly User: ModelStatic<Model>;
  readonly Settings: ModelStatic<Model>;
  readonly Article: ModelStatic<Model>;
  readonly Comment: ModelStatic<Model>;
  readonly Tag: ModelStatic<Model>;
  readonly ArticleTag: ModelStatic<Model>;
  readonly Favorite: ModelStatic<Model>;
  readonly Follow: ModelStatic<Model>;
}

export const ASSOC_SIZES = { users: 40, articles: 200, tags: 20, tagsPerArticle: 3, commentsPerArticle: 4, favoritesPerArticle: 5, followsPerUser: 6 } as const;

export function defineAssocModels(sequelize: Sequelize, tables: string): AssocModels {
  const User = sequelize.define('User', {
    username: { type: DataTypes.STRING, allowNull: false },
    email: DataTypes.STRING,
    bio: DataTypes.TEXT,
  }, { tableName: `${tables}users` });
  const Settings = sequelize.define('Settings', {
    theme: DataTypes.STRING,
    emails: { type: DataTypes.BOOLEAN, defaultValue: true },
  }, { tableName: `${tables}settings` });
  const Article = sequelize.define('Article', {
    slug: DataTypes.STRING,
    title: DataTypes.STRING,
    description: DataTypes.STRING,
    body: DataTypes.TEXT,
  }, { tableName: `${tables}articles`, indexes: [{ fields: ['authorId'] }] });
  const Comment = sequelize.define('Comment', { body: DataTypes.TEXT }, { tableName: `${tables}comments`, indexes: [{ fields: ['articleId'] }] });
  const Tag = sequelize.define('Tag', { name: DataTypes.STRING }, { tableName: `${tables}tags` });
  const ArticleTag = sequelize.define('ArticleTag', {}, { tableName: `${tables}article_tags`, timestamps: false });
  const Favorite = sequelize.define('Favorite', {}, { tableName: `${tables}favorites`, timestamps: false });
  const Follow = sequelize.define('Follow', {}, { tableName: `${tables}follows`, timestamps: false });
  User.hasOne(Settings, { as: 'settings', foreignKey: 'userId' });
  Settings.belongsTo(User, { foreignKey: 'userId' });
  Article.belongsTo(User, { as: 'author', foreignKey: 'authorId' });
  User.hasMany(Article, { as: 'articles', foreignKey: 'authorId' });
  Article.hasMany(Comment, { as: 'comments', foreignKey: 'articleId' });
  Comment.belongsTo(Article, { foreignKey: 'articleId' });
  Comment.belongsTo(User, { as: 'author', foreignKey: 'authorId' });
  Article.belongsToMany(Tag, { as: 'tagList', through: ArticleTag, foreignKey: 'articleId', otherKey: 'tagId' });
  Tag.belongsToMany(Article, { through: ArticleTag, foreignKey: 'tagId', otherKey: 'articleId' });
  Article.belongsToMany(User, { as: 'users', through: Favorite, foreignKey: 'articleId', otherKey: 'userId' });
  User.belongsToMany(Article, { as: 'favorites', through: Favorite, foreignKey: 'userId', otherKey: 'articleId' });
  User.belongsToMany(User, { as: 'followers', through: Follow, foreignKey: 'followingId', otherKey: 'followerId' });
  User.belongsToMany(User, { as: 'following', through: Follow, foreignKey: 'followerId', otherKey: 'followingId' });
  return { User, Settings, Article, Comment, Tag, ArticleTag, Favorite, Follow };
}

const ORDER = ['User', 'Settings', 'Article', 'Comment', 'Tag', 'ArticleTag', 'Favorite', 'Follow'] as const;

/** Creates the tables and fills them deterministically; run before cacheops is installed. */
export async function seedAssoc(m: AssocModels): Promise<void> {
  await dropAssoc(m).catch(() => undefined);
  for (const name of ORDER) await m[name].sync();
  const S = ASSOC_SIZES;
  await m.User.bulkCreate(Array.from({ length: S.users }, (_, i) => ({ username: `user${i + 1}`, email: `user${i + 1}@example.org`, bio: `Bio of user ${i + 1}` })));
  await m.Settings.bulkCreate(Array.from({ length: S.users }, (_, i) => ({ userId: i + 1, theme: i % 2 ? 'dark' : 'light' })));
  const base = Date.UTC(2024, 0, 1);
  await m.Article.bulkCreate(Array.from({ length: S.articles }, (_, i) => ({
    slug: `article-${i + 1}`, title: `Article ${i + 1}`, description: `About ${i + 1}`, body: `Body of article ${i + 1}. `.repeat(6),
    authorId: (i % S.users) + 1, createdAt: new Date(base + i * 3_600_000), updatedAt: new Date(base + i * 3_600_000),
  })));
  await m.Tag.bulkCreate(Array.from({ length: S.tags }, (_, i) => ({ name: `tag${i + 1}` })));
  const rows = <T>(n: number, per: number, make: (i: number, k: number) => T): T[] => Array.from({ length: n * per }, (_, j) => make(Math.floor(j / per), j % per));
  await m.ArticleTag.bulkCreate(rows(S.articles, S.tagsPerArticle, (i, k) => ({ articleId: i + 1, tagId: ((i + k * 7) % S.tags) + 1 })));
  await m.Comment.bulkCreate(rows(S.articles, S.commentsPerArticle, (i, k) => ({ articleId: i + 1, authorId: ((i + k) % S.users) + 1, body: `Comment ${k} on ${i + 1}` })));
  await m.Favorite.bulkCreate(rows(S.articles, S.favoritesPerArticle, (i, k) => ({ articleId: i + 1, userId: ((i + k * 3) % S.users) + 1 })));
  await m.Follow.bulkCreate(rows(S.users, S.followsPerUser, (i, k) => ({ followerId: i + 1, followingId: ((i + k * 5 + 1) % S.users) + 1 })));
}

export async function dropAssoc(m: AssocModels): Promise<void> {
  for (const name of [...ORDER].reverse()) await m[name].drop();
}
