/**
 * The HTTP load generator of the end-to-end benchmark: `connections`
 * keep-alive connections, each sending its next request as soon as the last
 * one's response has been read, for a fixed time. Counts requests and
 * errors and keeps every latency (µs).
 */
import http from 'node:http';

export interface Req { readonly method: 'GET' | 'POST'; readonly path: string }

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  readonly latencies: number[];
}

function send(agent: http.Agent, port: number, req: Req): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method: req.method, path: req.path, agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(req.method === 'POST' ? '{}' : undefined);
  });
}

export async function load(port: number, next: (i: number) => Req, connections: number, ms: number): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  let n = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  const worker = async (): Promise<void> => {
    while (process.hrtime.bigint() < deadline) {
      const req = next(n);
      n += 1;
      const t0 = process.hrtime.bigint();
      const status = await send(agent, port, req).catch(() => 0);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (status !== 200) errors += 1;
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  agent.destroy();
  return { requests: latencies.length, errors, seconds, latencies };
}
