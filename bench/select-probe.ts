/**
 * What a query's QueryInterface.select received and returned: the bench
 * builds its floors and breakdowns from the options Sequelize hands it.
 */
import type { Model, ModelStatic, Sequelize } from 'sequelize';

export interface SelectCall {
  readonly model: ModelStatic<Model>;
  readonly table: unknown;
  readonly options: Record<string, unknown>;
  readonly result: unknown;
}

type SelectFn = (model: ModelStatic<Model>, table: unknown, options: Record<string, unknown>) => Promise<unknown>;

/** Runs a query once with QueryInterface.select wrapped, and records its (last) select. */
export async function recordSelect(sequelize: Sequelize, query: () => Promise<unknown>): Promise<SelectCall> {
  const qi = sequelize.getQueryInterface() as unknown as { select: SelectFn };
  const inner = qi.select;
  let call: SelectCall | undefined;
  qi.select = async function select(this: unknown, model, table, options) {
    const copy = { ...options };
    const result = await inner.call(this, model, table, options);
    call = { model, table, options: copy, result };
    return result;
  };
  try {
    await query();
  } finally {
    qi.select = inner;
  }
  if (!call) throw new Error('the query ran no select');
  return call;
}
