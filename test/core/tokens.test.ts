/**
 * tokens.ts: values the database compares as equal must share a token (else
 * a write misses a query: a stale read); values it tells apart should not.
 */
import test from 'ava';
import fc from 'fast-check';
import { DataTypes } from 'sequelize';
import { canonicalNumber, tokenKind, tokenOf } from '../../src/core/tokens';

test.serial('canonicalNumber folds the spellings of one number', (t) => {
  const cases: [unknown, string][] = [
    [1, '1'], ['1', '1'], ['01', '1'], ['001', '1'], ['1.0', '1'], ['1.', '1'], ['+1', '1'], [' 7 ', '7'],
    ['1e3', '1000'], ['1E3', '1000'], ['1e+3', '1000'], ['10e-1', '1'], ['1e-2', '0.01'], ['.5', '0.5'], ['0.50', '0.5'],
    ['-0', '0'], [-0, '0'], ['-0.000', '0'], ['0e5', '0'], ['-1.50', '-1.5'], [-12, '-12'], ['-012.30', '-12.3'],
    [1n, '1'], [-5n, '-5'], [0n, '0'], [123456789012345678901234567890n, '123456789012345678901234567890'],
    ['123456789012345678901234567890', '123456789012345678901234567890'],
    [1.5e300, `15${'0'.repeat(299)}`],
  ];
  for (const [input, expected] of cases) t.is(canonicalNumber(input), expected, `canonicalNumber(${typeof input === 'bigint' ? `${input}n` : JSON.stringify(input)})`);
});

test.serial('canonicalNumber rejects what is not a number', (t) => {
  for (const garbage of ['', ' ', 'abc', '1a', '0x10', '1.2.3', '--1', '+-1', '.', 'e5', '1e', 'Infinity', 'NaN', '1,5', '1 2',
    NaN, Infinity, -Infinity, null, undefined, true, {}, [], [1], new Date(0), '1e999']) {
    t.is(canonicalNumber(garbage), undefined, `canonicalNumber(${String(garbage)})`);
  }
});

test.serial('property: integers, their strings, bigints and padded strings agree', (t) => {
  fc.assert(fc.property(fc.integer(), (n) => {
    const c = canonicalNumber(n);
    return c === String(n) && canonicalNumber(String(n)) === c && canonicalNumber(BigInt(n)) === c &&
      canonicalNumber(`${n < 0 ? '-' : ''}00${Math.abs(n)}.000`) === c && canonicalNumber(`${n}e0`) === c;
  }));
  fc.assert(fc.property(fc.bigInt(), (b) => canonicalNumber(b) === b.toString() && canonicalNumber(b.toString()) === b.toString()));
  t.pass();
});

test.serial('property: a finite double keeps its value and agrees with its exponential spelling', (t) => {
  fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
    const c = canonicalNumber(x);
    return c !== undefined && Number(c) === x && canonicalNumber(x.toExponential()) === c && !/e/i.test(c);
  }));
  t.pass();
});

test.serial('property: canonical text is a fixed point and distinct numbers stay distinct', (t) => {
  fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.double({ noNaN: true, noDefaultInfinity: true }), (a, b) => {
    const ca = canonicalNumber(a)!;
    return canonicalNumber(ca) === ca && (a === b) === (ca === canonicalNumber(b));
  }));
  t.pass();
});

const col = (type: unknown) => ({ type });

test.serial('tokenKind by column type and dialect', (t) => {
  t.is(tokenKind(col(DataTypes.INTEGER), 'postgres'), 'number');
  t.is(tokenKind(col(new DataTypes.BIGINT()), 'sqlite'), 'number');
  t.is(tokenKind(col(DataTypes.DECIMAL(10, 2)), 'mysql'), 'number');
  t.is(tokenKind(col(DataTypes.BOOLEAN), 'sqlite'), 'boolean');
  t.is(tokenKind(col(DataTypes.STRING), 'postgres'), 'string');
  t.is(tokenKind(col(DataTypes.TEXT), 'sqlite'), 'string');
  t.is(tokenKind(col(DataTypes.STRING), 'mysql'), 'ci-string', 'MySQL/MariaDB collations fold case and trailing spaces');
  t.is(tokenKind(col(DataTypes.UUID), 'postgres'), 'ci-string');
  t.is(tokenKind(col(DataTypes.DATE), 'postgres'), 'date');
  t.is(tokenKind(col(DataTypes.DATEONLY), 'postgres'), 'dateonly');
  t.is(tokenKind(col(DataTypes.BLOB), 'postgres'), 'blob');
  t.is(tokenKind(col(DataTypes.JSON), 'postgres'), 'none');
  t.is(tokenKind(col(DataTypes.FLOAT), 'postgres'), 'none', 'floats compare inexactly: never granular');
  t.is(tokenKind(col('weird'), 'postgres'), 'none');
});

test.serial('numbers: 1, "1", "01", 1n, "1.0" share a token; 1 and 2 do not', (t) => {
  const one = tokenOf('number', 1);
  t.is(one, 'n1');
  for (const v of ['1', '01', 1n, '1.0', 1.0, true]) t.is(tokenOf('number', v), one, String(v));
  t.not(tokenOf('number', 2), one);
  t.is(tokenOf('number', 'abc'), undefined, 'garbage has no token (matches anything)');
  // Past 2^53 a JS number may be a rounded read of a BIGINT (SQLite's driver): no token. Strings and bigints keep theirs.
  t.is(tokenOf('number', 9007199254740992), undefined);
  t.is(tokenOf('number', 9007199254740991), 'n9007199254740991');
  t.is(tokenOf('number', '9007199254740993'), 'n9007199254740993');
  t.is(tokenOf('number', 9007199254740993n), 'n9007199254740993');
});

test.serial('strings: 1 vs "1" vs "01" vs " 1" differ on a STRING column', (t) => {
  t.is(tokenOf('string', '1'), 's1');
  t.not(tokenOf('string', '01'), tokenOf('string', '1'));
  t.not(tokenOf('string', ' 1'), tokenOf('string', '1'));
  t.not(tokenOf('string', '1 '), tokenOf('string', '1'));
  t.not(tokenOf('string', 'A'), tokenOf('string', 'a'));
  t.is(tokenOf('string', 1), undefined, 'a number in a string condition is not granular');
});

test.serial('null vs "null" vs "" are three different tokens, on every kind', (t) => {
  for (const kind of ['string', 'ci-string'] as const) {
    const tokens = [tokenOf(kind, null), tokenOf(kind, 'null'), tokenOf(kind, ''), tokenOf(kind, 'N')];
    t.is(new Set(tokens).size, 4, `${kind}: ${tokens.join(' ')}`);
    t.true(tokens.every((x) => x !== undefined));
  }
  for (const kind of ['number', 'boolean', 'date', 'dateonly', 'blob'] as const) {
    t.is(tokenOf(kind, null), 'N');
    t.not(tokenOf(kind, 0), 'N');
  }
  t.is(tokenOf('none', null), undefined);
});

test.serial('ci-string folds case and trailing spaces; non-ASCII has no token', (t) => {
  t.is(tokenOf('ci-string', 'Abc  '), tokenOf('ci-string', 'aBC'));
  t.not(tokenOf('ci-string', ' abc'), tokenOf('ci-string', 'abc'));
  t.is(tokenOf('ci-string', 'café'), undefined, 'accent folding is collation-specific: not granular');
});

test.serial('booleans, dates, dateonly and blobs', (t) => {
  for (const v of [true, 1, '1', 't', 'true']) t.is(tokenOf('boolean', v), 'b1');
  for (const v of [false, 0, '0', 'f', 'false']) t.is(tokenOf('boolean', v), 'b0');
  t.is(tokenOf('boolean', 'yes'), undefined);
  t.is(tokenOf('date', new Date(5)), 'd5');
  t.is(tokenOf('date', new Date('invalid')), undefined);
  t.is(tokenOf('date', '2020-01-01'), undefined, 'a date string may be parsed in any zone: not granular');
  t.is(tokenOf('dateonly', '2020-01-31'), 'D2020-01-31');
  t.is(tokenOf('dateonly', '2020-1-31'), undefined);
  t.is(tokenOf('blob', Buffer.from([0, 255])), 'x00ff');
  t.not(tokenOf('blob', Buffer.from('a')), tokenOf('string', 'a'));
});

test.serial('property: string tokens are injective; ci-string tokens agree with the collation fold', (t) => {
  fc.assert(fc.property(fc.string(), fc.string(), (a, b) => (a === b) === (tokenOf('string', a) === tokenOf('string', b))));
  const ascii = fc.string({ unit: fc.constantFrom('a', 'A', 'b', 'B', ' ', '1') });
  fc.assert(fc.property(ascii, ascii, (a, b) => {
    const fold = (s: string) => s.toLowerCase().replace(/ +$/, '');
    return (fold(a) === fold(b)) === (tokenOf('ci-string', a) === tokenOf('ci-string', b));
  }));
  t.pass();
});
