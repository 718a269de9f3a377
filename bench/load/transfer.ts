// Big streamed transfers with plain node:http clients: autocannon would
// buffer and count, while this only moves bytes and times the whole exchange.
import http from 'node:http';
import { MiB } from '../ipc/messages.ts';

export interface TransferRequest {
  port: number;
  host: string;
  direction: 'download' | 'upload';
  bytes: number;
  concurrency: number;
  timeoutMs: number;
}

export interface TransferSample {
  seconds: number;
  /** Aggregate over the concurrent transfers. */
  mibPerSecond: number;
}

// Reused for every write so the client's own allocations stay flat. ASCII, see upstream.ts.
const CHUNK = Buffer.alloc(64 * 1024, 'c');

function download(request: TransferRequest, agent: http.Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: request.port, path: `/stream?bytes=${request.bytes}`, headers: { host: request.host }, agent },
      (res) => {
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`download: status ${res.statusCode}`));
          else if (received !== request.bytes) reject(new Error(`download: got ${received} of ${request.bytes} bytes`));
          else resolve();
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

function upload(request: TransferRequest, agent: http.Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    // No Content-Length: node:http sends the body chunked.
    const req = http.request(
      { host: '127.0.0.1', port: request.port, method: 'POST', path: '/sink', headers: { host: request.host, 'content-type': 'application/octet-stream' }, agent },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString();
          const received = res.statusCode === 200 ? (JSON.parse(text) as { received?: number }).received : undefined;
          if (received === request.bytes) resolve();
          else reject(new Error(`upload: status ${res.statusCode}, upstream received ${received ?? '?'} of ${request.bytes} bytes${text ? `: ${text.slice(0, 200)}` : ''}`));
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    let left = request.bytes;
    const pump = (): void => {
      while (left > 0) {
        const size = Math.min(left, CHUNK.length);
        left -= size;
        if (!req.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** Runs `concurrency` transfers at once and times them from first request to last byte. */
export async function runTransfers(request: TransferRequest): Promise<TransferSample> {
  // Its own agent, destroyed afterwards: no socket outlives the measurement.
  const agent = new http.Agent({ keepAlive: false, maxSockets: request.concurrency });
  const transfer = request.direction === 'download' ? download : upload;
  let timer: NodeJS.Timeout | undefined;
  const started = process.hrtime.bigint();
  try {
    await Promise.race([
      Promise.all(Array.from({ length: request.concurrency }, () => transfer(request, agent))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${request.direction} took over ${request.timeoutMs} ms`)), request.timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    agent.destroy();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, mibPerSecond: (request.bytes * request.concurrency) / MiB / seconds };
}
