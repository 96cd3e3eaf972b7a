/**
 * docker-compose.yml starts its databases with every setting the change
 * stream's start checks require (the lists the checks themselves use) and the
 * ones docs/change-stream.md recommends, so the file cannot drift from them.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PG_REQUIRED_SETTINGS } from '../../src/stream/pg-server';
import { BINLOG_GRANULAR_SETTINGS, BINLOG_REQUIRED_SETTINGS } from '../../src/stream/mariadb-server';

const compose = readFileSync(join(__dirname, '..', '..', 'docker-compose.yml'), 'utf8');

/** The `command:` of a service, written as a flow sequence of strings (JSON). */
function commandOf(service: string): string[] {
  const block = new RegExp(`^  ${service}:\\n((?:    .*\\n|\\s*\\n)+)`, 'm').exec(compose)?.[1];
  if (block === undefined) throw new Error(`no service ${service} in docker-compose.yml`);
  const line = /^    command: (\[.*\])\s*$/m.exec(block)?.[1];
  if (line === undefined) throw new Error(`service ${service} has no one-line command: [...] (the test reads that form)`);
  return JSON.parse(line) as string[];
}

/** PostgreSQL's `-c name=value` pairs. */
function pgSettings(command: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  command.forEach((arg, i) => {
    if (arg !== '-c') return;
    const [name, ...value] = command[i + 1]!.split('=');
    out.set(name!.replace(/-/g, '_'), value.join('='));
  });
  return out;
}

/** mariadbd's `--name[=value]` options, names with underscores; a bare flag is ON. */
function mariadbSettings(command: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const arg of command) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(arg);
    if (m) out.set(m[1]!.replace(/-/g, '_'), m[2] ?? 'ON');
  }
  return out;
}

/** How a value reads for the server: case-insensitive, ON/1/TRUE alike; a log_bin base name turns it on. */
function sameValue(name: string, given: string, wanted: string): boolean {
  const norm = (v: string): string => (/^(on|1|true)$/i.test(v) ? 'ON' : v.toUpperCase());
  if (name === 'log_bin' && wanted === 'ON') return given !== '' && !/^(off|0|false)$/i.test(given);
  return norm(given) === norm(wanted);
}

test('PostgreSQL: every setting the start check requires, and the recommended slot and walsender settings', (t) => {
  const settings = pgSettings(commandOf('postgres'));
  t.true(Object.keys(PG_REQUIRED_SETTINGS).length > 0);
  for (const [name, wanted] of Object.entries(PG_REQUIRED_SETTINGS)) {
    t.true(settings.has(name), `docker-compose.yml: postgres needs -c ${name}=${wanted}`);
    t.true(sameValue(name, settings.get(name) ?? '', wanted), `${name}=${settings.get(name)}, the check requires ${wanted}`);
  }
  // docs/change-stream.md: a walsender and a slot for the consumer; a bound on what an abandoned slot keeps.
  for (const name of ['max_replication_slots', 'max_wal_senders']) t.true(Number(settings.get(name)) >= 1, `${name} >= 1`);
  t.regex(settings.get('max_slot_wal_keep_size') ?? '', /^\d+(kB|MB|GB|TB)?$/, 'max_slot_wal_keep_size bounds an abandoned slot');
});

test('MariaDB: every setting the start check requires, FULL row images, and a server id', (t) => {
  const settings = mariadbSettings(commandOf('mariadb'));
  const wanted = { ...BINLOG_REQUIRED_SETTINGS, ...BINLOG_GRANULAR_SETTINGS };
  t.true(Object.keys(wanted).length >= 3);
  for (const [name, value] of Object.entries(wanted)) {
    t.true(settings.has(name), `docker-compose.yml: mariadb needs --${name.replace(/_/g, '-')}${value === 'ON' ? '' : `=${value}`}`);
    t.true(sameValue(name, settings.get(name) ?? '', value), `${name}=${settings.get(name)}, the check requires ${value}`);
  }
  // docs/change-stream.md's my.cnf: a binlog-writing server has a server id of its own.
  t.true(Number(settings.get('server_id')) >= 1, 'server_id >= 1');
});

test('the readers above fail on a file without the settings', (t) => {
  t.deepEqual([...pgSettings(['postgres', '-c', 'wal_level=replica'])], [['wal_level', 'replica']]);
  t.false(sameValue('wal_level', 'replica', PG_REQUIRED_SETTINGS.wal_level));
  t.false(sameValue('log_bin', 'OFF', BINLOG_REQUIRED_SETTINGS.log_bin));
  t.true(sameValue('log_bin', 'mysql-bin', BINLOG_REQUIRED_SETTINGS.log_bin));
  t.false(sameValue('binlog_format', 'MIXED', BINLOG_REQUIRED_SETTINGS.binlog_format));
  t.deepEqual(mariadbSettings(['--log-bin', '--binlog-row-image=MINIMAL']), new Map([['log_bin', 'ON'], ['binlog_row_image', 'MINIMAL']]));
});
