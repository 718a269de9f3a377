import { createHash } from 'node:crypto';
import http from 'node:http';
import { createProxy, type ProxyOptions } from '../src/index.ts';
import { captureLogs } from './helpers/logs.ts';
import { listen, type Running } from './helpers/servers.ts';

const HOST = 'app.localhost';

async function startFront(options: Omit<ProxyOptions, 'logger'>) {
  const { logger, records } = captureLogs('info');
  const proxy = createProxy({ logger, ...options });
  const running = await listen(http.createServer((req, res) => proxy(req, res)));
  return Object.assign(running, { records, stop: async () => (proxy.close(), running.close()) });
}

describe('streaming through the proxy', () => {
  it('delivers each server-sent event as the upstream writes it', async () => {
    // The upstream writes event N+1 only after the client has received event N:
    // a proxy that buffered would deadlock here instead of passing.
    const received: Array<() => void> = [];
    const upstream = await listen(
      http.createServer(async (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        for (let i = 1; i <= 3; i++) {
          res.write(`id: ${i}\ndata: event ${i}\n\n`);
          await new Promise<void>((resolve) => received.push(resolve));
        }
        res.end();
      }),
    );
    const front = await startFront({ routes: { [HOST]: upstream.url } });
    try {
      const events = await new Promise<string[]>((resolve, reject) => {
        http.get({ port: front.port, host: '127.0.0.1', path: '/events', headers: { host: HOST, accept: 'text/event-stream' } }, (res) => {
          expect(res.headers['content-type']).toBe('text/event-stream');
          const seen: string[] = [];
          let buffer = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buffer += chunk;
            let end: number;
            while ((end = buffer.indexOf('\n\n')) !== -1) {
              seen.push(/data: (.*)/.exec(buffer.slice(0, end))![1]!);
              buffer = buffer.slice(end + 2);
              received.shift()?.();
            }
          });
          res.on('end', () => resolve(seen));
          res.on('error', reject);
        });
      });
      expect(events).toEqual(['event 1', 'event 2', 'event 3']);
      expect(front.records).toEqual([]);
    } finally {
      await front.stop();
      await upstream.close();
    }
  });

  it('holds backpressure for a slow client instead of buffering the upstream', async () => {
    let written = 0;
    let upstreamClosed = false;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const upstream = await listen(
      http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.once('close', () => (upstreamClosed = true));
        // Writes up to 256 MB, but only as fast as the path to the client drains.
        const pump = () => {
          while (written < 256 * 1024 * 1024 && !res.destroyed) {
            written += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      }),
    );
    const front = await startFront({ routes: { [HOST]: upstream.url } });
    try {
      const req = http.get({ port: front.port, host: '127.0.0.1', path: '/big', headers: { host: HOST }, agent: false }, (res) => res.pause());
      req.on('error', () => {});
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Socket buffers on three hops hold a few MB at most; a buffering proxy would have taken it all.
      expect(written).toBeLessThan(32 * 1024 * 1024);
      const writtenWhilePaused = written;
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(written).toBe(writtenWhilePaused);
      req.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(upstreamClosed).toBe(true);
    } finally {
      await front.stop();
      await upstream.close();
    }
  });

  it('streams a large upload and download byte for byte', async () => {
    const upstream = await listen(
      http.createServer((req, res) => {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
        });
      }),
    );
    const front = await startFront({ routes: { [HOST]: upstream.url }, bodyLimit: '64mb' });
    try {
      const body = Buffer.alloc(20 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
      const answer = await new Promise<string>((resolve, reject) => {
        const req = http.request({ port: front.port, host: '127.0.0.1', method: 'PUT', path: '/blob', headers: { host: HOST, 'transfer-encoding': 'chunked' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        for (let i = 0; i < body.length; i += 1024 * 1024) req.write(body.subarray(i, i + 1024 * 1024));
        req.end();
      });
      expect(JSON.parse(answer)).toEqual({ bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    } finally {
      await front.stop();
      await upstream.close();
    }
  });
});

describe('the idle timeout', () => {
  let upstream: Running;
  let upstreamResponseFinished: boolean | undefined;

  beforeAll(async () => {
    upstream = await listen(
      http.createServer((_req, res) => {
        res.once('close', () => (upstreamResponseFinished = res.writableFinished));
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('first part, then silence');
      }),
    );
  });
  afterAll(() => upstream.close());

  it('aborts a response that stalls mid-body: the client sees a cut connection, the log a read timeout', async () => {
    const front = await startFront({ routes: { [HOST]: upstream.url }, timeouts: { idle: 300 } });
    try {
      const started = Date.now();
      const outcome = await new Promise<{ status?: number; body: string; complete: boolean }>((resolve) => {
        http.get({ port: front.port, host: '127.0.0.1', path: '/', headers: { host: HOST } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          const done = () => resolve({ status: res.statusCode, body, complete: res.complete });
          res.on('end', done);
          res.on('error', done);
        });
      });
      expect(outcome).toEqual({ status: 200, body: 'first part, then silence', complete: false });
      expect(Date.now() - started).toBeGreaterThanOrEqual(280);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(upstreamResponseFinished).toBe(false);
      expect(front.records).toHaveLength(1);
      expect(front.records[0]).toMatchObject({
        level: 'warn',
        status: 504,
        code: 'UPSTREAM_TIMEOUT',
        proxyStatus: 'connection_read_timeout',
        afterResponseStarted: true,
      });
    } finally {
      await front.stop();
    }
  });
});
