/**
 * The fixed probe set: reads checked (cached vs uncached) after every step.
 * Between them they cover each model, each association kind, granular
 * conditions on every tokenized column type, counts and aggregates.
 */
import { Op } from 'sequelize';
import { DATES } from './schema';
import { getter, query, type Read } from './reads';

const byId = { order: [['id', 'ASC']] };

export const PROBES: readonly Read[] = [
  query('Item', 'findAll', () => ({ ...byId })),
  query('Item', 'findAll', () => ({ where: { s: 'a' }, ...byId })),
  query('Item', 'findAll', () => ({ where: { n: 1, flag: true } })),
  query('Item', 'findAll', () => ({ where: { n: null } })),
  query('Item', 'findAll', () => ({ where: { s: { [Op.in]: ['', 'null', 'ü'] } } })),
  query('Item', 'findAll', () => ({ where: { ownerId: [1, 2] }, paranoid: false, ...byId })),
  query('Item', 'findAll', () => ({ where: { at: DATES[1] } })),
  query('Item', 'findAll', () => ({ where: { [Op.or]: [{ flag: false }, { s: { [Op.is]: null } }] }, raw: true })),
  query('Item', 'findByPk', () => ({}), 1),
  query('Item', 'findByPk', () => ({}), 100),
  query('Item', 'findOne', () => ({ where: { s: 'a ' }, ...byId })),
  query('Item', 'count', () => ({})),
  query('Item', 'count', () => ({ where: { flag: false }, paranoid: false })),
  query('Item', 'sum', () => ({}), 'n'),
  query('Item', 'max', () => ({ where: { s: 'A' } }), 'n'),
  query('Item', 'findAll', (r) => ({ include: [{ model: r('Label'), through: { where: { w: 1 } } }], ...byId })),
  query('Item', 'findAll', (r) => ({ where: { ownerId: 1 }, include: [{ model: r('Owner'), where: { name: 'A' } }, { model: r('Note') }] })),
  query('Owner', 'findAll', (r) => ({ include: [{ model: r('Item'), include: [{ model: r('Label') }, { model: r('Note') }] }], ...byId })),
  query('Label', 'findAll', (r) => ({ include: [{ model: r('Item'), required: true }], ...byId })),
  query('Label', 'findAll', () => ({ where: { name: 'null' } })),
  query('Note', 'findAll', () => ({ where: { itemId: 1 } })),
  query('Note', 'count', () => ({})),
  query('ItemLabel', 'findAll', () => ({})),
  query('Owner', 'findAll', () => ({})),
  getter('Item', 1, 'getLabels', () => ({})),
  getter('Owner', 1, 'getItems', () => ({ where: { flag: true } })),
  // Association methods with a fast path of their own (query/fast-association.ts).
  getter('Item', 1, 'hasLabels', () => ({}), false, { model: 'Label', ids: [1, 2], instances: true, list: true }),
  getter('Owner', 1, 'hasItem', () => ({}), false, { model: 'Item', ids: [2], instances: false, list: false }),
  // Two calls that differ in their second target only: their fingerprints must too.
  getter('Owner', 1, 'hasItems', () => ({}), false, { model: 'Item', ids: [1, 2], instances: false, list: true }),
  getter('Owner', 1, 'hasItems', () => ({}), false, { model: 'Item', ids: [1, 3], instances: false, list: true }),
  getter('Item', 3, 'hasLabels', () => ({}), false, { model: 'Label', ids: [1, 2], instances: true, list: true }),
  getter('Item', 3, 'hasLabels', () => ({}), false, { model: 'Label', ids: [1, 3], instances: true, list: true }),
  getter('Item', 2, 'countNotes', () => ({})),
  getter('Label', 1, 'countItems', () => ({ where: { flag: true } })),
  getter('Label', 2, 'getFirstLink', () => ({ order: [['itemId', 'ASC']] })),
  query('Item', 'findAndCountAll', (r) => ({ include: [{ model: r('Owner') }], limit: 2, order: [['id', 'ASC']] })),
];
