/**
 * Starts the example blog: `npm start` (PORT, default 3000; REDIS_URL).
 * HOST (default 127.0.0.1), EXAMPLE_DB (the SQLite file, default in the temp dir; the
 * `cacheops` command opens the same one through cli-app.ts). Open a page twice and
 * watch the panel: the second time, 0 SQL queries.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createExample, exampleDatabase, type Example, type ExampleOptions } from './app';

export interface RunningExample {
  readonly url: string;
  readonly port: number;
  readonly example: Example;
  close(): Promise<void>;
}

/** Starts the blog on a port (0: any free port) and resolves once it listens. */
export async function startExample(port = 0, options: ExampleOptions = {}, host = '127.0.0.1'): Promise<RunningExample> {
  const example = await createExample(options);
  const server = createServer(example.app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    example,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await example.close();
    },
  };
}

if (require.main === module) {
  const port = Number.parseInt(process.env['PORT'] ?? '3000', 10);
  const storage = exampleDatabase();
  startExample(port, { storage }, process.env['HOST'] ?? '127.0.0.1').then((running) => {
    console.log(`example blog on ${running.url} (SQLite ${storage}, Redis ${process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379'})`);
    const stop = (): void => { void running.close().then(() => process.exit(0)); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }, (error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
