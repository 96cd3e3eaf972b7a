/**
 * Rows for the blog schema of models.ts, with every column type filled in
 * (dates with milliseconds, DECIMAL, BIGINT past 2^53, JSON, DATEONLY, BLOB,
 * booleans, NULLs) and every association used.
 */
import type { Model } from 'sequelize';
import type { Blog } from './models';

export interface Seeded {
  readonly categories: Model[];
  readonly authors: Model[];
  readonly posts: Model[];
  readonly tags: Model[];
  readonly comments: Model[];
}

export async function seedBlog(blog: Blog): Promise<Seeded> {
  const { Category, Author, Post, Tag, PostTag, Comment } = blog;
  const categories = [await Category.create({ name: 'news' }), await Category.create({ name: 'tech' }), await Category.create({ name: 'empty' })];
  const authors = [
    await Author.create({ name: 'Ann', email: 'ann@example.com', active: true }),
    await Author.create({ name: 'Bob', email: 'bob@example.com', active: false }),
  ];
  const tags = [await Tag.create({ name: 'js' }), await Tag.create({ name: 'db' }), await Tag.create({ name: 'cache' })];
  const posts: Model[] = [];
  for (let i = 0; i < 6; i++) {
    posts.push(await Post.create({
      title: `post ${i}`,
      body: i % 2 ? `body of ${i}` : null,
      views: i * 10,
      rating: `${i}.5${i}`,
      published: i % 2 === 0,
      publishedAt: new Date(Date.UTC(2020, 0, 1 + i, 12, 30, 15, 123)),
      day: `2021-02-0${i + 1}`,
      meta: { n: i, list: [i, 'x'], nested: { ok: i > 2 } },
      blob: Buffer.from([0, i, 255]),
      big: `900719925474099${i}`,
      categoryId: categories[i % 2]!.get('id'),
      authorId: authors[i % 3 === 2 ? 1 : 0]!.get('id'),
    }));
  }
  for (const [p, t, w] of [[0, 0, 3], [0, 1, 1], [1, 1, 2], [2, 0, 1], [2, 1, 5], [2, 2, 4], [4, 2, 1]] as const) {
    await PostTag.create({ postId: posts[p]!.get('id'), tagId: tags[t]!.get('id'), weight: w });
  }
  const comments: Model[] = [];
  for (const [p, text, approved] of [[0, 'first', true], [0, 'second', false], [2, 'third', true], [3, 'fourth', true]] as const) {
    comments.push(await Comment.create({ postId: posts[p]!.get('id'), text, approved }));
  }
  return { categories, authors, posts, tags, comments };
}
