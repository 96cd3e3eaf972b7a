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
  /** The first failed response's status and body (or the request's error), when one failed. */
  readonly firstError?: string;
}

function send(agent: http.Agent, port: number, req: Req): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method: req.method, path: req.path, agent, headers: { 'content-type': 'application/json' } }, (res) => {
      // Only a failed response's body is kept (to say why it failed).
      const failed = res.statusCode !== 200;
      let body = '';
      res.on('data', (chunk: Buffer) => { if (failed && body.length < 500) body += chunk.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
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
  let firstError: string | undefined;
  let n = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  const worker = async (): Promise<void> => {
    while (process.hrtime.bigint() < deadline) {
      const req = next(n);
      n += 1;
      const t0 = process.hrtime.bigint();
      const { status, body } = await send(agent, port, req).catch((error: unknown) => ({ status: 0, body: String(error) }));
      latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (status !== 200) {
        errors += 1;
        firstError ??= `${req.method} ${req.path}: ${status} ${body.slice(0, 300)}`;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  agent.destroy();
  return { requests: latencies.length, errors, seconds, latencies, ...(firstError === undefined ? {} : { firstError }) };
}
