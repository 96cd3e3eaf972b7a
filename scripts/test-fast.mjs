// `npm run test:fast`: the quick test files, for the edit loop (seconds, not
// minutes): configuration, keys, reads, writes and invalidation on the
// dialects of TEST_DIALECTS (default sqlite), from the sources (no build). Left out, and run by `npm test`
// and CI: the package and README checks (they pack and install the package),
// the browser test, the CLI binary, the never-stale differential and stress
// runs, Redis faults, cluster and Sentinel, the near cache and timing tests.
// Extra arguments go to AVA (say --match).
import { spawn } from 'node:child_process';

const FAST = [
  'api', 'core/config', 'core/degrade', 'write/invalidation', 'core/keys', 'features/simple', 'smoke', 'core/suggest',
  'core/transactions', 'core/tree', 'write/write-option', 'write/writes', 'query/fast-path', 'query/fingerprint', 'query/reads',
].map((name) => `test/${name}.test.ts`);

const ava = spawn('npx', ['ava', ...FAST, ...process.argv.slice(2)], { stdio: 'inherit', shell: process.platform === 'win32' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => ava.kill(sig));
ava.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
