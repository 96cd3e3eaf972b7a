/**
 * The example's blog: categories, authors, posts and comments, seeded on start.
 */
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';

export interface BlogModels {
  readonly Category: ModelStatic<Model>;
  readonly Author: ModelStatic<Model>;
  readonly Post: ModelStatic<Model>;
  readonly Comment: ModelStatic<Model>;
}

export function defineModels(sequelize: Sequelize): BlogModels {
  const Category = sequelize.define('Category', { name: { type: DataTypes.STRING, allowNull: false } });
  const Author = sequelize.define('Author', { name: { type: DataTypes.STRING, allowNull: false } });
  const Post = sequelize.define('Post', {
    title: { type: DataTypes.STRING, allowNull: false },
    body: { type: DataTypes.TEXT, allowNull: false, defaultValue: '' },
    published: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
  });
  const Comment = sequelize.define('Comment', { text: { type: DataTypes.STRING, allowNull: false } });
  Post.belongsTo(Category, { foreignKey: 'categoryId' });
  Category.hasMany(Post, { foreignKey: 'categoryId' });
  Post.belongsTo(Author, { foreignKey: 'authorId' });
  Author.hasMany(Post, { foreignKey: 'authorId' });
  Post.hasMany(Comment, { foreignKey: 'postId' });
  Comment.belongsTo(Post, { foreignKey: 'postId' });
  return { Category, Author, Post, Comment };
}

/** Creates the tables and a few rows (the database starts empty on every run). */
export async function seed(sequelize: Sequelize, m: BlogModels): Promise<void> {
  await sequelize.sync({ force: true });
  const [news, howto] = await m.Category.bulkCreate([{ name: 'News' }, { name: 'How-to' }]);
  const [ada, linus] = await m.Author.bulkCreate([{ name: 'Ada' }, { name: 'Linus' }]);
  const posts = await m.Post.bulkCreate([
    { title: 'Caching without stale reads', body: 'Every write invalidates exactly the cached queries it could change.', categoryId: news!.get('id'), authorId: ada!.get('id') },
    { title: 'Fragments in Nunjucks', body: 'Wrap a costly block in cached_as and give it a sample.', categoryId: howto!.get('id'), authorId: linus!.get('id') },
    { title: 'Views cached by path', body: 'A whole page, replayed without running its handler.', categoryId: howto!.get('id'), authorId: ada!.get('id') },
    { title: 'Draft: mass updates', body: 'Not published yet.', published: false, categoryId: news!.get('id'), authorId: linus!.get('id') },
  ]);
  await m.Comment.bulkCreate([
    { text: 'Nice read.', postId: posts[0]!.get('id') },
    { text: 'What about joins?', postId: posts[0]!.get('id') },
    { text: 'Works with includes too.', postId: posts[1]!.get('id') },
  ]);
}
