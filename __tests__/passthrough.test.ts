import http from 'node:http';
import request from 'supertest';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { sendRaw, startScriptedUpstream, type ScriptedUpstream } from './helpers/scripted-upstream.ts';
import { startUpstream, type Upstream } from './helpers/servers.ts';

const HOST = 'app.localhost';

// Status, headers and body an upstream app may send; each must reach the client as sent.
const SWEEP: Array<{ status: number; headers?: Record<string, string>; body?: string }> = [
  { status: 200, headers: { 'content-type': 'text/plain' }, body: 'ok' },
  { status: 204 },
  // A Location on another site is the app's own business (one at the upstream is rewritten: see in-app.test.ts).
  { status: 301, headers: { location: 'https://elsewhere.example/moved' }, body: 'moved' },
  { status: 304, headers: { etag: '"v1"' } },
  { status: 400, headers: { 'content-type': 'application/json' }, body: '{"error":"validation failed"}' },
  { status: 401, headers: { 'www-authenticate': 'Bearer realm="app"' }, body: 'who are you' },
  { status: 404, headers: { 'content-type': 'application/json' }, body: '{"error":"not found"}' },
  { status: 409, headers: { 'content-type': 'application/json' }, body: '{"error":"conflict"}' },
  { status: 410, body: 'gone' },
  { status: 418, body: "I'm a teapot" },
  { status: 429, headers: { 'retry-after': '45' }, body: 'slow down' },
  { status: 500, headers: { 'content-type': 'application/json' }, body: '{"error":"boom"}' },
  { status: 502, body: 'the app says bad gateway' },
  { status: 503, headers: { 'retry-after': '10' }, body: 'maintenance' },
  { status: 504, body: 'the app says gateway timeout' },
];

describe.each(EXPRESS_VERSIONS)('pass-through (%s)', (_name, express) => {
  let upstream: Upstream;
  let proxy: ProxyApp;
  const { logger, records } = captureLogs();

  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      const url = new URL(req.url!, 'http://upstream');
      if (url.pathname === '/missing-resource') {
        // Seed 000's reproduction, byte for byte.
        const body = Buffer.from('{"error": "not found"}');
        res.writeHead(404, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
        res.end(body);
        return;
      }
      if (url.pathname === '/binary') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
        return;
      }
      if (url.pathname === '/echo') {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, body: Buffer.concat(chunks).toString() }));
        });
        return;
      }
      if (url.pathname === '/hop-by-hop') {
        res.writeHead(200, { 'keep-alive': 'timeout=5', 'x-app': 'yes', connection: 'x-private, keep-alive', 'x-private': 'hop' });
        res.end('hop');
        return;
      }
      const entry = SWEEP.find((e) => e.status === Number(url.searchParams.get('status')));
      if (!entry) {
        res.writeHead(599);
        res.end();
        return;
      }
      res.writeHead(entry.status, { 'x-app-marker': String(entry.status), ...entry.headers });
      res.end(entry.body);
    });
    proxy = await startProxyApp(express, { routes: { [HOST]: upstream.url }, logger });
  });

  afterAll(async () => {
    await proxy.close();
    await upstream.close();
  });

  beforeEach(() => {
    records.length = 0;
  });

  it('passes an app 404 with its JSON body through as a 404 (seed 000 regression)', async () => {
    const res = await request(proxy.server).get(`${PREFIX}/missing-resource`).set('Host', HOST).buffer(true);
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['content-length']).toBe('22');
    expect(res.text).toBe('{"error": "not found"}');
    expect(res.headers['proxy-status']).toBeUndefined();
    expect(records.filter((r) => r.level !== 'debug')).toEqual([]);
  });

  it.each(SWEEP)('passes status $status through with its headers and body', async ({ status, headers = {}, body }) => {
    const req = request(proxy.server).get(`${PREFIX}/sweep?status=${status}`).set('Host', HOST);
    const res = await req.buffer(true).parse((response, callback) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => callback(null, Buffer.concat(chunks)));
    });
    expect(res.status).toBe(status);
    expect(res.headers['x-app-marker']).toBe(String(status));
    for (const [name, value] of Object.entries(headers)) expect(res.headers[name]).toBe(value);
    const expectedBody = status === 204 || status === 304 ? '' : (body ?? '');
    expect((res.body as Buffer).toString()).toBe(expectedBody);
    // Nothing of the proxy's own is added to an upstream response.
    expect(res.headers['proxy-status']).toBeUndefined();
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers['x-request-id']).toBeUndefined();
  });

  it('delivers binary bodies byte for byte', async () => {
    const res = await request(proxy.server)
      .get(`${PREFIX}/binary`)
      .set('Host', HOST)
      .buffer(true)
      .parse((response, callback) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => callback(null, Buffer.concat(chunks)));
      });
    expect(res.status).toBe(200);
    expect(Buffer.compare(res.body as Buffer, Buffer.from(Array.from({ length: 256 }, (_, i) => i)))).toBe(0);
  });

  it('forwards method, path below the mount point, query, body and the client Host', async () => {
    const res = await request(proxy.server).post(`${PREFIX}/echo?x=1&y=two`).set('Host', `${HOST}:8080`).send('hello upstream');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ method: 'POST', url: '/echo?x=1&y=two', host: `${HOST}:8080`, body: 'hello upstream' });
  });

  it('forwards a generated request id upstream, and keeps a sane one the client sent', async () => {
    await request(proxy.server).get(`${PREFIX}/echo`).set('Host', HOST);
    const generated = upstream.seen.at(-1)!.headers['x-request-id'];
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    await request(proxy.server).get(`${PREFIX}/echo`).set('Host', HOST).set('X-Request-ID', 'req_abc123xyz');
    expect(upstream.seen.at(-1)!.headers['x-request-id']).toBe('req_abc123xyz');

    await request(proxy.server).get(`${PREFIX}/echo`).set('Host', HOST).set('X-Request-ID', 'has spaces and <script>');
    expect(upstream.seen.at(-1)!.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers Expect: 100-continue itself and forwards the body without Expect', async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({
        port: proxy.port,
        host: '127.0.0.1',
        method: 'POST',
        path: `${PREFIX}/echo`,
        headers: { host: HOST, expect: '100-continue', 'content-length': '5' },
      });
      req.on('continue', () => req.end('hello'));
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ method: 'POST', body: 'hello' });
    expect(upstream.seen.at(-1)!.headers['expect']).toBeUndefined();
  });

  it("does not forward the client's hop-by-hop headers upstream", async () => {
    await request(proxy.server)
      .get(`${PREFIX}/echo`)
      .set('Host', HOST)
      .set('Connection', 'close, x-client-hop')
      .set('X-Client-Hop', 'for the proxy only')
      .set('Keep-Alive', 'timeout=30')
      .set('Proxy-Authorization', 'Basic cHJveHk6c2VjcmV0')
      .set('TE', 'trailers')
      .set('X-End-To-End', 'kept');
    const seen = upstream.seen.at(-1)!.headers;
    expect(seen['connection']).not.toMatch(/close/);
    expect(seen['x-client-hop']).toBeUndefined();
    expect(seen['keep-alive']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen['te']).toBe('trailers');
    expect(seen['x-end-to-end']).toBe('kept');
  });

  it("drops the upstream's hop-by-hop headers and keeps its end-to-end ones", async () => {
    const res = await request(proxy.server).get(`${PREFIX}/hop-by-hop`).set('Host', HOST);
    expect(res.status).toBe(200);
    expect(res.headers['x-app']).toBe('yes');
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.headers['x-private']).toBeUndefined();
    expect(res.text).toBe('hop');
  });
});

describe.each(EXPRESS_VERSIONS)("the upstream response's hop-by-hop fields, on the wire (%s)", (_name, express) => {
  let upstream: ScriptedUpstream;
  let proxy: ProxyApp;
  const { logger } = captureLogs();
  // Each of src/upstream/hop-by-hop.ts's fixed list, none of them named in a Connection field.
  const HOP_BY_HOP_ALONE =
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nKeep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n' +
    'Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\nX-App: yes\r\n' +
    'Transfer-Encoding: chunked\r\nX-Last: kept\r\n\r\n3\r\nhop\r\n0\r\nX-Checksum: abc\r\n\r\n';

  beforeAll(async () => {
    upstream = await startScriptedUpstream((request) => {
      if (request.target === '/alone') return [HOP_BY_HOP_ALONE];
      // An upstream that closes its own connection: that says nothing about the client's.
      return ['HTTP/1.1 200 OK\r\nConnection: close\r\nProxy-Connection: close\r\nContent-Length: 5\r\nX-App: yes\r\n\r\nclose', { close: 'end' }];
    });
    proxy = await startProxyApp(express, { routes: { [HOST]: upstream.url }, logger });
  });
  afterAll(async () => {
    await proxy.close();
    await upstream.close();
  });

  it('removes every field of the fixed list (Keep-Alive, Proxy-Connection, Proxy-Authorization, TE, Trailer, Upgrade, Transfer-Encoding) and nothing else', async () => {
    const ex = await sendRaw(proxy.port, `GET ${PREFIX}/alone HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
    expect(ex.final?.status).toBe(200);
    expect(ex.final?.complete).toBe(true);
    expect(ex.final?.body.toString('latin1')).toBe('hop');
    // The upstream's end-to-end fields in their order; the rest is this hop's own framing and date.
    expect(ex.final!.headers.filter(([name]) => name !== 'date')).toEqual([
      ['content-type', 'text/plain'],
      ['x-app', 'yes'],
      ['x-last', 'kept'],
      ['connection', 'close'],
      ['transfer-encoding', 'chunked'],
    ]);
    // The upstream's trailer belonged to its framing, like the Trailer field that announced it.
    expect(ex.text).not.toContain('X-Checksum');
  });

  it("an upstream's Connection: close and Proxy-Connection close only the upstream connection: the client's stays open", async () => {
    const ex = await sendRaw(proxy.port, `GET ${PREFIX}/closes HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, { timeoutMs: 1_000, lingerMs: 200 });
    expect(ex.final?.status).toBe(200);
    expect(ex.final?.body.toString('latin1')).toBe('close');
    expect(ex.final!.headers.filter(([name]) => name !== 'date')).toEqual([
      ['content-length', '5'],
      ['x-app', 'yes'],
      ['connection', 'keep-alive'],
      ['keep-alive', 'timeout=5'],
    ]);
    expect(ex.closed).toBe(false);
  });
});
