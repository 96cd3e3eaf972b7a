// Builds dist/: CommonJS + declarations with tsc, the Lua scripts beside them,
// and an ESM entry that re-exports the CommonJS build (one copy of the state).
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync, writeFileSync, readFileSync, chmodSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';

rmSync('dist', { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { stdio: 'inherit' });
cpSync('src/core/lua', 'dist/core/lua', { recursive: true, filter: (p) => !p.endsWith('.ts') });
const names = [...readFileSync('src/index.ts', 'utf8').matchAll(/^export \{([^}]*)\} from/gm)]
  .flatMap((m) => m[1].split(',').map((s) => s.trim()).filter(Boolean));
writeFileSync('dist/index.mjs', `import cjs from './index.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`);
if (existsSync('dist/cli/main.js')) chmodSync('dist/cli/main.js', 0o755);
