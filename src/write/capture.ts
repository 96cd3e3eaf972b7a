/**
 * Write capture: every write path of Sequelize ends in a QueryInterface
 * method (insert, update, bulkInsert, bulkUpdate, delete, bulkDelete, upsert,
 * increment, decrement) or in a raw `sequelize.query` (raw-sql.ts). Each
 * method is wrapped here, so that hooks being off (`hooks: false`, bulk
 * writes without individualHooks) cannot hide a write, and described to the
 * write protocol (protocol.ts): which rows it may touch, how to find their
 * new states.
 */
import { Op, type Model, type ModelStatic } from 'sequelize';
import type { CacheopsCore } from '../core/cacheops-core';
import { tableIndex } from '../core/tables';
import { byPrimaryKeys, byUniqueKeys, primaryKeys, toAttributes, type Row } from './rows';
import { WriteProtocol, type AfterSpec, type Options } from './protocol';
import { captureRawWrites } from './raw-sql';
import { hookStatements } from './images/statement';
import { queryInterfaceMethods } from '../core/sequelize-internals';

function modelOfTable(sequelize: CacheopsCore['sequelize'], tableName: unknown, options?: Options): ModelStatic<Model> | undefined {
  const fromOptions = options?.['model'];
  if (typeof fromOptions === 'function') return fromOptions as ModelStatic<Model>;
  const t = typeof tableName === 'string' ? tableName
    : (tableName as { tableName?: string; schema?: string } | undefined)?.schema
      ? `${(tableName as { schema: string }).schema}.${(tableName as { tableName: string }).tableName}`
      : (tableName as { tableName?: string } | undefined)?.tableName;
  if (!t) return undefined;
  const index = tableIndex(sequelize);
  return index.byTable.get(t) ?? [...index.byTable.values()].find((m) => m.tableName === t);
}

/** Wraps this installation's QueryInterface write methods and `sequelize.query`. */
export function installWriteCapture(core: CacheopsCore): void {
  const self = new WriteProtocol(core);
  if (['postgres', 'mysql', 'mariadb', 'sqlite'].includes(core.dialect)) hookStatements(core.sequelize);
  // The QueryInterface methods are typed loosely on purpose: they are Sequelize internals.
  type Fn = (...args: never[]) => Promise<unknown>;
  const qi = queryInterfaceMethods<Fn>(core.sequelize);
  const wrap = (name: string, body: (original: Fn, thisArg: unknown, args: unknown[]) => Promise<unknown>): void => {
    const original = qi[name]!;
    qi[name] = function wrapped(this: unknown, ...args: never[]) {
      return body(original, this, args);
    } as Fn;
  };
  const call = (original: Fn, thisArg: unknown, args: unknown[], optionsIndex: number, whereIndex?: number) => (o: Options, where?: unknown) => {
    const next = [...args];
    next[optionsIndex] = o;
    if (whereIndex !== undefined && where !== undefined) next[whereIndex] = where;
    return original.apply(thisArg, next as never[]);
  };

  wrap('insert', (original, thisArg, args) => {
    const [instance, , , options] = args as [Model, unknown, Row, Options];
    const model = instance?.constructor as ModelStatic<Model> | undefined;
    return self.write(model, options ?? {}, {
      images: 'insert',
      oneRow: true,
      after: (result) => {
        const built = (Array.isArray(result) ? result[0] : result) as Model | undefined;
        const values = (built ?? instance).dataValues as Row;
        const where = byPrimaryKeys(model!, [values]);
        return where === undefined ? { appRows: [values] } : { where };
      },
    }, call(original, thisArg, args, 3)).then((r) => self.cacheOnSave(instance, options).then(() => r));
  });

  wrap('update', (original, thisArg, args) => {
    const [instance, , values, identifier, options] = args as [Model, unknown, Row, unknown, Options];
    const model = instance?.constructor as ModelStatic<Model> | undefined;
    return self.write(model, options ?? {}, {
      images: 'update',
      setsKey: model !== undefined && setsKey(model, values),
      before: identifier,
      after: (_result, before) => {
        const changesKey = primaryKeys(model!).some((k) => k in toAttributes(model!, values));
        if (changesKey) {
          const where = byPrimaryKeys(model!, [{ ...(instance.dataValues as Row) }]);
          return where === undefined ? 'all' : { where };
        }
        const where = byPrimaryKeys(model!, before);
        return where === undefined ? 'all' : { where };
      },
    }, call(original, thisArg, args, 4)).then((r) => self.cacheOnSave(instance, options).then(() => r));
  });

  /** Whether the values (field or attribute keyed) set a primary key column. */
  const setsKey = (model: ModelStatic<Model>, values: Row | undefined): boolean =>
    values !== undefined && values !== null && primaryKeys(model).some((k) => k in toAttributes(model, values));

  const byBeforeKeys = (model: ModelStatic<Model>, values: Row | undefined) => (_r: unknown, before: Row[]): AfterSpec => {
    if (values && primaryKeys(model).some((k) => k in toAttributes(model, values))) return 'all';
    const where = byPrimaryKeys(model, before);
    return where === undefined ? 'all' : { where };
  };

  wrap('bulkUpdate', (original, thisArg, args) => {
    const [tableName, values, identifier, options] = args as [unknown, Row, unknown, Options];
    const model = modelOfTable(core.sequelize, tableName, options);
    return self.write(model, options ?? {}, {
      images: 'update', setsKey: model !== undefined && setsKey(model, values), before: identifier ?? {}, narrow: true, after: model && byBeforeKeys(model, values),
    }, call(original, thisArg, args, 3, 2));
  });

  for (const name of ['increment', 'decrement']) {
    wrap(name, (original, thisArg, args) => {
      const [model, , where, amounts, extra, options] = args as [ModelStatic<Model>, unknown, unknown, Row, Row, Options];
      return self.write(model, options ?? {}, {
        images: 'update', setsKey: setsKey(model, { ...amounts, ...extra }), before: where ?? {}, narrow: true, after: byBeforeKeys(model, undefined),
      }, call(original, thisArg, args, 5, 2));
    });
  }

  wrap('delete', (original, thisArg, args) => {
    const [instance, , identifier, options] = args as [Model, unknown, unknown, Options];
    return self.write(instance?.constructor as ModelStatic<Model>, options ?? {}, { images: 'delete', before: identifier }, call(original, thisArg, args, 3));
  });

  wrap('bulkDelete', (original, thisArg, args) => {
    const [tableName, where, options, model] = args as [unknown, unknown, Options, ModelStatic<Model> | undefined];
    const m = model ?? modelOfTable(core.sequelize, tableName, options);
    const wholeModel = options?.['truncate'] === true || where === undefined;
    return self.write(m, options ?? {}, wholeModel ? { wholeModel, implicitCommit: options?.['truncate'] === true } : { images: 'delete', before: where, narrow: true }, call(original, thisArg, args, 2, 1));
  });

  wrap('upsert', (original, thisArg, args) => {
    const [tableName, insertValues, , , options] = args as [unknown, Row, Row, unknown, Options];
    const model = modelOfTable(core.sequelize, tableName, options);
    if (!model) return self.write(undefined, options ?? {}, {}, call(original, thisArg, args, 4));
    const { where, complete } = byUniqueKeys(model, [insertValues]);
    return self.write(model, options ?? {}, complete && where !== null ? {
      before: where,
      after: (_r, before) => {
        const keys = byPrimaryKeys(model, before);
        return keys === undefined ? 'all' : { where: keys === null ? where : { [Op.or]: [where, keys] } };
      },
    } : { wholeModel: true }, call(original, thisArg, args, 4));
  });

  wrap('bulkInsert', (original, thisArg, args) => {
    const [tableName, records, options] = args as [unknown, Row[], Options];
    const model = modelOfTable(core.sequelize, tableName, options);
    if (!model) return self.write(undefined, options ?? {}, {}, call(original, thisArg, args, 2));
    if (records.length > core.config.maxRowsForGranularWrite) {
      return self.write(model, options ?? {}, { wholeModel: true }, call(original, thisArg, args, 2));
    }
    const mayTouchExisting = Boolean(options?.['updateOnDuplicate'] || options?.['ignoreDuplicates']);
    const { where, complete } = byUniqueKeys(model, records);
    if (mayTouchExisting && !complete) return self.write(model, options ?? {}, { wholeModel: true }, call(original, thisArg, args, 2));
    return self.write(model, options ?? {}, {
      ...(mayTouchExisting ? {} : { images: 'insert' as const }),
      ...(mayTouchExisting ? { before: where } : {}),
      after: (_r, before) => {
        const keys = byPrimaryKeys(model, before);
        if (keys === undefined) return 'all';
        const parts = [where, keys].filter((w) => w !== null);
        // Rows the application gave no key for can only be known by their values.
        const appRows = complete ? [] : records;
        return { where: parts.length === 0 ? null : parts.length === 1 ? parts[0] : { [Op.or]: parts }, appRows };
      },
    }, call(original, thisArg, args, 2));
  });
  captureRawWrites(self);
}
