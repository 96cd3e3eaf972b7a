// Runs AVA's command line in TAP mode, with one change to its TAP reporter: a
// known failure (a `test.failing` test that failed, as it was declared to) is
// written as `not ok ... (known failure)`. Plain TAP writes it as `ok`, which
// would count a known bug as a passing test. Used by scripts/ci-summary.mjs.
// Usage: node scripts/ava-tap.mjs [ava arguments...]
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const avaMain = createRequire(import.meta.url).resolve('ava'); // <ava>/entrypoints/main.cjs
const avaRoot = dirname(dirname(avaMain));
const load = (file) => import(pathToFileURL(join(avaRoot, file)).href);

try {
  // The same module URL AVA's CLI imports, so the change applies to its reporter.
  const { default: TapReporter } = await load('lib/reporters/tap.js');
  const writeTest = TapReporter.prototype.writeTest;
  TapReporter.prototype.writeTest = function markKnownFailure(evt, flags) {
    if (evt?.knownFailing && flags?.passed && !flags.skip && !flags.todo) {
      return writeTest.call(this, { ...evt, title: `${evt.title} (known failure)` }, { ...flags, passed: false });
    }
    return writeTest.call(this, evt, flags);
  };
} catch (error) {
  console.error(`ava-tap: could not mark known failures (${error.message}); they are reported as passed`);
}

if (!process.argv.slice(2).includes('--tap')) process.argv.push('--tap');
await load('entrypoints/cli.mjs');
