import http from 'node:http';
import request from 'supertest';
import { createProxy, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { rawRequest } from './helpers/raw-http.ts';
import { listen, type Running } from './helpers/servers.ts';

/** What one request looked like from the upstream's side. */
interface Received {
  bytes: number;
  complete: boolean;
  /** The request stream closed: ended, or torn down by the proxy. */
  closed: boolean;
}

/** An upstream that reads the whole body before answering, and records whether it ever got all of it. */
async function startRecordingUpstream(): Promise<Running & { received: Received[]; connections: number }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const entry: Received = { bytes: 0, complete: false, closed: false };
    received.push(entry);
    req.on('close', () => (entry.closed = true));
    req.on('data', (chunk: Buffer) => (entry.bytes += chunk.length));
    req.on('end', () => {
      entry.complete = true;
      res.end(`got ${entry.bytes}`);
    });
  });
  const running = Object.assign(await listen(server), { received, connections: 0 });
  server.on('connection', () => running.connections++);
  return running;
}

/** Sends a chunked body in parts, pausing between them so the proxy forwards each before the next. */
function sendChunked(port: number, host: string, parts: Buffer[]): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: `${PREFIX}/upload`, headers: { host, 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    // Writing after the proxy answered and closed may fail; the response is what counts.
    req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
    let i = 0;
    const next = () => {
      if (i === parts.length) return void req.end();
      req.write(parts[i++]);
      setTimeout(next, 40);
    };
    next();
  });
}

describe.each(EXPRESS_VERSIONS)('body-size limit (%s)', (_name, express) => {
  let upstream: Awaited<ReturnType<typeof startRecordingUpstream>>;
  let proxy: ProxyApp;
  const { logger, records } = captureLogs('info');

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    proxy = await startProxyApp(express, {
      routes: {
        'small.localhost': upstream.url,
        'uploads.localhost': { target: upstream.url, bodyLimit: '4kb' },
        'unlimited.localhost': { target: upstream.url, bodyLimit: false },
      },
      bodyLimit: 1000,
      logger,
    });
  });
  afterAll(async () => {
    await proxy.close();
    await upstream.close();
  });
  beforeEach(() => {
    records.length = 0;
    upstream.received.length = 0;
    upstream.connections = 0;
  });

  it('refuses a declared 1 GiB body at once, unread, without opening an upstream connection', async () => {
    const res = await rawRequest(
      proxy.port,
      `POST ${PREFIX}/upload HTTP/1.1\r\nHost: small.localhost\r\nContent-Length: 1073741824\r\n\r\nonly a few bytes`,
    );
    expect(res.status).toBe(413);
    expect(res.body).toBe('Payload Too Large');
    expect(res.headers['connection']).toBe('close');
    expect(res.headers['proxy-status']).toBe('proxy; error=http_request_error');
    expect(upstream.connections).toBe(0);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 'info', status: 413, code: 'PAYLOAD_TOO_LARGE', host: 'small.localhost' });
  });

  it('passes a body of exactly the limit, declared or chunked, unchanged', async () => {
    const exact = Buffer.alloc(1000, 'a');
    const declared = await request(proxy.server).post(`${PREFIX}/upload`).set('Host', 'small.localhost').send(exact.toString());
    expect(declared.status).toBe(200);
    expect(declared.text).toBe('got 1000');

    const chunked = await sendChunked(proxy.port, 'small.localhost', [exact.subarray(0, 600), exact.subarray(600)]);
    expect(chunked.status).toBe(200);
    expect(chunked.body).toBe('got 1000');
    expect(upstream.received).toEqual([
      { bytes: 1000, complete: true, closed: true },
      { bytes: 1000, complete: true, closed: true },
    ]);
  });

  it('counts a chunked body as it streams and aborts the upstream request when it crosses the limit', async () => {
    const res = await sendChunked(proxy.port, 'small.localhost', [Buffer.alloc(600, 'a'), Buffer.alloc(600, 'b'), Buffer.alloc(600, 'c')]);
    expect(res.status).toBe(413);
    expect(res.body).toBe('Payload Too Large');
    expect(res.headers['connection']).toBe('close');
    // Let the abort reach the upstream.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0]!.complete).toBe(false);
    expect(upstream.received[0]!.closed).toBe(true);
    expect(upstream.received[0]!.bytes).toBeLessThanOrEqual(1000);
    expect(records.filter((r) => r.code === 'PAYLOAD_TOO_LARGE')).toHaveLength(1);
  });

  it('lets a route carry its own limit, larger or none', async () => {
    const body = 'x'.repeat(3000);
    expect((await request(proxy.server).post(`${PREFIX}/u`).set('Host', 'small.localhost').send(body)).status).toBe(413);
    const upload = await request(proxy.server).post(`${PREFIX}/u`).set('Host', 'uploads.localhost').send(body);
    expect(upload.status).toBe(200);
    expect(upload.text).toBe('got 3000');
    expect((await request(proxy.server).post(`${PREFIX}/u`).set('Host', 'uploads.localhost').send('x'.repeat(5000))).status).toBe(413);
    const unlimited = await request(proxy.server).post(`${PREFIX}/u`).set('Host', 'unlimited.localhost').send('x'.repeat(50_000));
    expect(unlimited.text).toBe('got 50000');
  });
});

describe('bodyLimit option', () => {
  const routes = { 'a.localhost': 'http://127.0.0.1:1' };
  const construct = (options: Partial<ProxyOptions>) => () => createProxy({ routes, ...options } as ProxyOptions);

  it.each(['10 MiB', '-1kb', 'abc', '1.5.5mb', ''])('rejects %p, naming the option', (value) => {
    expect(construct({ bodyLimit: value })).toThrow(/^honest-proxy: bodyLimit must be false, a whole number of bytes, or a size such as/);
  });

  it.each([-1, 1.5, Number.NaN, true])('rejects the number-like %p', (value) => {
    expect(construct({ bodyLimit: value as never })).toThrow(/bodyLimit must be false/);
  });

  it('accepts sizes as bytes understands them', () => {
    for (const value of ['10mb', '512kb', '1 gb', '100b', '100', 0, 1024, false] as const) {
      expect(typeof createProxy({ routes, bodyLimit: value })).toBe('function');
    }
  });

  it("rejects a route's bad limit, naming the route", () => {
    expect(() => createProxy({ routes: { 'a.localhost': { target: 'http://127.0.0.1:1', bodyLimit: '5 lots' } } })).toThrow(
      /routes\["a.localhost"\].bodyLimit must be false/,
    );
  });
});
