/**
 * Transactions: after a write, reads inside bypass the cache and store
 * nothing; invalidations run after the outermost commit; rollback drops
 * them; savepoints merge or drop theirs. Both with CLS and with the
 * `transaction` option.
 */
import test from 'ava';
import { Sequelize, type Transaction } from 'sequelize';
import { createAsyncLocalNamespace } from '../../src/index';
import { makeBlog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';

// The package's AsyncLocalStorage namespace (test/features/async-namespace.test.ts compares it with cls-hooked).
Sequelize.useCLS(createAsyncLocalNamespace());

const titleOf = (rows: unknown[]): string[] => rows.map((r) => (r as { title: string }).title).sort();

for (const dialect of dialects()) {
  test.serial(`${dialect}: managed CLS transaction — reads after a write bypass, invalidation after commit`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'txcls');
    try {
      const { Post, sequelize } = blog;
      await Post.create({ title: 'a', views: 1 });
      const read = () => Post.findAll({ where: { views: 1 } });
      await read();
      await sequelize.transaction(async () => {
        t.is((await countSql(sequelize, read)).sql.length, 0, 'before writing, a transaction may hit');
        await Post.create({ title: 'b', views: 1 });
        const inside = await countSql(sequelize, read);
        t.is(inside.sql.length, 1, 'after writing, reads bypass the cache');
        t.deepEqual(titleOf(inside.result), ['a', 'b']);
        // Outside the transaction (other connection) the cache still serves the committed state.
      });
      const after = await countSql(sequelize, read);
      t.is(after.sql.length, 1, 'the commit invalidated');
      t.deepEqual(titleOf(after.result), ['a', 'b']);
      t.is((await countSql(sequelize, read)).sql.length, 0, 'and the fresh value is cached again');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: reads inside a transaction never store, even before writing`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'txnostore');
    try {
      const { Post, sequelize } = blog;
      await Post.create({ title: 'a', views: 2 });
      const read = (transaction?: Transaction) => Post.findAll({ where: { views: 2 }, transaction });
      const tx = await sequelize.transaction();
      await read(tx);
      await read(tx);
      await tx.commit();
      t.is((await countSql(sequelize, () => read())).sql.length, 1, 'nothing was stored by the transaction');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: rollback drops queued invalidations; commit runs them`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'txrb');
    try {
      const { Post, sequelize, cacheops } = blog;
      await Post.create({ title: 'a', views: 3 });
      const read = () => Post.findAll({ where: { views: 3 } });
      await read();
      const events: string[] = [];
      cacheops.on('invalidated', (e) => events.push(e.table));
      const tx = await sequelize.transaction();
      await Post.create({ title: 'rolled back', views: 3 }, { transaction: tx });
      t.deepEqual(events, [], 'nothing invalidated before the commit');
      await tx.rollback();
      t.deepEqual(events, [], 'nor after a rollback');
      const after = await countSql(sequelize, read);
      t.is(after.sql.length, 0, 'the cache was kept');
      t.deepEqual(titleOf(after.result), ['a']);

      const tx2 = await sequelize.transaction();
      await Post.update({ title: 'a2' }, { where: { views: 3 }, transaction: tx2 });
      await tx2.commit();
      t.true(events.includes('Posts'));
      t.deepEqual(titleOf((await countSql(sequelize, read)).result), ['a2']);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: savepoints — a rolled back savepoint drops its invalidations, a committed one merges`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'txsp');
    try {
      const { Post, sequelize } = blog;
      await Post.bulkCreate([{ title: 'x', views: 10 }, { title: 'y', views: 20 }]);
      const read10 = () => Post.findAll({ where: { views: 10 } });
      const read20 = () => Post.findAll({ where: { views: 20 } });
      await read10();
      await read20();
      const outer = await sequelize.transaction();
      const sp1 = await sequelize.transaction({ transaction: outer });
      await Post.update({ title: 'x2' }, { where: { views: 10 }, transaction: sp1 });
      await sp1.rollback();
      const sp2 = await sequelize.transaction({ transaction: outer });
      await Post.update({ title: 'y2' }, { where: { views: 20 }, transaction: sp2 });
      await sp2.commit();
      await outer.commit();
      const r10 = await countSql(sequelize, read10);
      const r20 = await countSql(sequelize, read20);
      t.deepEqual(titleOf(r10.result), ['x'], 'the rolled back change is not visible');
      t.deepEqual(titleOf(r20.result), ['y2'], 'the committed savepoint was invalidated');
      t.is(r20.sql.length, 1);
      t.is(r10.sql.length, 0, 'the dropped savepoint did not invalidate');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: unmanaged transaction with the transaction option`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'txopt');
    try {
      const { Post, sequelize } = blog;
      const p = await Post.create({ title: 'a', views: 4 });
      const read = () => Post.findByPk(p.get('id') as number);
      await read();
      const tx = await sequelize.transaction();
      await p.update({ title: 'b' }, { transaction: tx });
      const inside = await countSql(sequelize, () => Post.findByPk(p.get('id') as number, { transaction: tx }));
      t.is(inside.sql.length, 1);
      t.is((inside.result as unknown as { title: string }).title, 'b');
      const outside = await countSql(sequelize, read);
      t.is((outside.result as unknown as { title: string }).title, 'a', 'others still see the committed row');
      await tx.commit();
      t.is(((await read()) as unknown as { title: string }).title, 'b');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: TRUNCATE inside a transaction that rolls back (MySQL/MariaDB commit it anyway)`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'txtrunc');
    try {
      const { Comment, sequelize } = blog;
      await Comment.bulkCreate([{ text: 'a' }, { text: 'b' }]);
      const count = () => Comment.count();
      t.is(await count(), 2);
      const tx = await sequelize.transaction();
      await Comment.truncate({ transaction: tx });
      await tx.rollback();
      t.is(await count(), await Comment.count({ cacheops: false }), 'the cached count agrees with the database');
    } finally {
      await blog.close();
    }
  });
}
