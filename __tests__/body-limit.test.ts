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

  it('a declared body over the limit but small enough to drain still closes the connection: the 413 says why, and the log the sizes', async () => {
    const res = await rawRequest(proxy.port, `POST ${PREFIX}/upload HTTP/1.1\r\nHost: small.localhost\r\nContent-Length: 1500\r\n\r\n${'x'.repeat(1500)}`);
    expect(res.status).toBe(413);
    expect(res.headers['connection']).toBe('close');
    expect(upstream.connections).toBe(0);
    expect(records.map((r) => [r.code, r.message])).toEqual([['PAYLOAD_TOO_LARGE', 'declared body of 1500 bytes over the limit of 1000']]);
  });

  it('logs a streamed body by the limit it passed', async () => {
    const res = await sendChunked(proxy.port, 'small.localhost', [Buffer.alloc(600, 'a'), Buffer.alloc(600, 'b')]);
    expect(res.status).toBe(413);
    expect(records.filter((r) => r.code === 'PAYLOAD_TOO_LARGE').map((r) => r.message)).toEqual(['streamed body passed the limit of 1000 bytes']);
  });

  it("reads sizes as `bytes` does: ' 1kb ' (spaces around) is 1024 bytes, '1.25kb' is 1280", async () => {
    const sized = await startProxyApp(express, {
      routes: { 'spaced.localhost': { target: upstream.url, bodyLimit: ' 1kb ' }, 'fraction.localhost': { target: upstream.url, bodyLimit: '1.25kb' } },
      logger,
    });
    try {
      const statuses: Array<[string, number, number]> = [];
      for (const [host, limit] of [['spaced.localhost', 1024], ['fraction.localhost', 1280]] as const) {
        for (const size of [limit, limit + 1]) {
          statuses.push([host, size, (await request(sized.server).post(`${PREFIX}/u`).set('Host', host).send('x'.repeat(size))).status]);
        }
      }
      expect(statuses).toEqual([
        ['spaced.localhost', 1024, 200],
        ['spaced.localhost', 1025, 413],
        ['fraction.localhost', 1280, 200],
        ['fraction.localhost', 1281, 413],
      ]);
    } finally {
      await sized.close();
    }
  });

  it('without a bodyLimit, the limit is 10 MiB: 2 KB goes through, a declared 10 MiB + 1 is refused unread', async () => {
    const plain = await startProxyApp(express, { routes: { 'small.localhost': upstream.url }, logger });
    try {
      const small = await request(plain.server).post(`${PREFIX}/u`).set('Host', 'small.localhost').send('x'.repeat(2048));
      expect([small.status, small.text]).toEqual([200, 'got 2048']);
      const big = await rawRequest(plain.port, `POST ${PREFIX}/u HTTP/1.1\r\nHost: small.localhost\r\nContent-Length: ${10 * 1024 * 1024 + 1}\r\n\r\nonly a few bytes`);
      expect(big.status).toBe(413);
      expect(records.filter((r) => r.code === 'PAYLOAD_TOO_LARGE').map((r) => r.message)).toEqual([`declared body of ${10 * 1024 * 1024 + 1} bytes over the limit of ${10 * 1024 * 1024}`]);
    } finally {
      await plain.close();
    }
  });

  it('measures a body a parser read and the proxy encoded again by its new size, not the Content-Length the client sent', async () => {
    // 1e9 is 3 bytes as sent and 10 as JSON.stringify writes it: 41 bytes on the wire, 111 re-encoded.
    const app = express();
    app.use(express.json());
    app.use(PREFIX, createProxy({ routes: { 'small.localhost': upstream.url }, consumedBody: 'reserialize', bodyLimit: 100, logger }));
    const running = await listen(http.createServer(app));
    try {
      const sent = `[${Array.from({ length: 10 }, () => '1e9').join(',')}]`;
      expect(sent).toHaveLength(41);
      const res = await request(running.url).post(`${PREFIX}/u`).set('Host', 'small.localhost').set('Content-Type', 'application/json').send(sent);
      expect(res.status).toBe(413);
      expect(upstream.received).toEqual([]);
      expect(records.filter((r) => r.code === 'PAYLOAD_TOO_LARGE').map((r) => r.message)).toEqual(['declared body of 111 bytes over the limit of 100']);
    } finally {
      await running.close();
    }
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

  it.each<[unknown, string]>([
    ['10 MiB', '"10 MiB"'],
    [Number.NaN, 'NaN'],
  ])('shows the refused %p as given: a string quoted, anything else as it is', (value, shown) => {
    expect(construct({ bodyLimit: value as never })).toThrow(new RegExp(`\\(units b, kb, mb, gb, tb, pb\\); got ${shown}$`));
  });

  it('rejects a size that is no whole number of bytes JavaScript can count exactly', () => {
    // 10,000,000 PiB is past Number.MAX_SAFE_INTEGER bytes.
    expect(construct({ bodyLimit: '10000000pb' })).toThrow(/bodyLimit must be false/);
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
