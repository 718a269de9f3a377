import http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, ProxyOptionsError, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { closedPort, listen, startBlackholePort, startUpstream, type Running, type Upstream } from './helpers/servers.ts';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

function get(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An upstream that answers what its handler says; a slow path, a redirect and CORS headers of its own. */
async function startApp(): Promise<Upstream> {
  return startUpstream((req, res) => {
    if (req.url!.includes('slow')) {
      setTimeout(() => res.end('late'), 600);
      return;
    }
    if (req.url!.includes('redirect')) {
      res.writeHead(302, { location: `http://127.0.0.1:${(req.socket.address() as { port: number }).port}/next` });
      res.end();
      return;
    }
    res.writeHead(200, {
      server: 'sandbox/1.0',
      'x-powered-by': 'Express',
      'access-control-allow-origin': '*',
      'content-type': 'text/plain',
      etag: '"v1"',
    });
    res.end(`path=${req.url}`);
  });
}

const routesError = (routes: unknown) => () => createProxy({ routes } as unknown as ProxyOptions);

describe('route objects are checked whole', () => {
  it.each([
    [{ target: 'http://127.0.0.1:1', bodylimit: 5 }, /unknown option "routes\["a\.test"\]\.bodylimit"; did you mean "routes\["a\.test"\]\.bodyLimit"\?/],
    [{ target: 'http://127.0.0.1:1', timeout: { response: 5 } }, /did you mean "routes\["a\.test"\]\.timeouts"\?/],
    [{ target: 'http://127.0.0.1:1', timeouts: { route: 5 } }, /routes\["a\.test"\]\.timeouts\.route cannot be set on a route/],
    [{ target: 'http://127.0.0.1:1', timeouts: { response: -1 } }, /routes\["a\.test"\]\.timeouts\.response must be a whole number/],
    [{ target: 'http://127.0.0.1:1', changeOrigin: 'yes' }, /routes\["a\.test"\]\.changeOrigin must be true or false/],
    [{ target: 'http://127.0.0.1:1', forwarded: 'x-real-ip' }, /routes\["a\.test"\]\.forwarded must be 'x-forwarded', 'rfc7239', 'both' or false/],
    [{ target: 'http://127.0.0.1:1', pathRewrite: { api: '/v2' } }, /routes\["a\.test"\]\.pathRewrite: the prefix "api" must start with \//],
    [{ target: 'http://127.0.0.1:1', pathRewrite: { '/api': 'v2' } }, /routes\["a\.test"\]\.pathRewrite\["\/api"\] must be a path starting with \//],
    [{ target: 'http://127.0.0.1:1', pathRewrite: '/v2' }, /routes\["a\.test"\]\.pathRewrite must be a function/],
    [{ target: 'http://127.0.0.1:1', responseHeaders: { set: { 'Content-Length': '5' } } }, /responseHeaders\.set\["Content-Length"\]: "Content-Length" cannot be set or removed/],
    [{ target: 'http://127.0.0.1:1', responseHeaders: { remove: ['Transfer-Encoding'] } }, /responseHeaders\.remove\[0\]: "Transfer-Encoding" cannot be set or removed/],
    [{ target: 'http://127.0.0.1:1', responseHeaders: { remove: ['x-a'], set: { 'X-A': '1' } } }, /is both removed and set/],
    [{ target: 'http://127.0.0.1:1', responseHeaders: { set: { 'x-a': 'a\r\nb' } } }, /has a character Node refuses/],
    [{ target: 'http://127.0.0.1:1', responseHeaders: { sets: {} } }, /unknown option "routes\["a\.test"\]\.responseHeaders\.sets"/],
  ])('refuses %p naming the route', (route, message) => {
    expect(routesError({ 'a.test': route })).toThrow(ProxyOptionsError);
    expect(routesError({ 'a.test': route })).toThrow(message);
  });

  it('refuses framing headers in the proxy-wide responseHeaders too', () => {
    expect(() => createProxy({ routes: { 'a.test': 'http://127.0.0.1:1' }, responseHeaders: { set: { Connection: 'close' } } })).toThrow(/responseHeaders\.set\["Connection"\]/);
    expect(() => createProxy({ routes: { 'a.test': 'http://127.0.0.1:1' }, pathRewrite: 5 as never })).toThrow(/pathRewrite must be a function/);
  });
});

describe.each(EXPRESS_VERSIONS)('per-route settings (%s)', (_label, express) => {
  let app: Upstream;
  const running: Running[] = [];
  beforeAll(async () => {
    app = await startApp();
  });
  afterAll(() => app.close());
  afterEach(async () => {
    for (const part of running.splice(0)) await part.close();
  });

  async function front(options: ProxyOptions): Promise<number> {
    const proxy = createProxy(options);
    const expressApp = express();
    expressApp.use(PREFIX, proxy);
    const server = http.createServer(expressApp);
    server.on('upgrade', proxy.upgradeThrough(expressApp, PREFIX));
    const listening = await listen(server);
    running.push({ ...listening, close: async () => (await proxy.close({ timeout: 100 }), await listening.close()) });
    return listening.port;
  }

  it("a route's timeouts override the proxy's: its slow response is a 504, the other route's waits", async () => {
    const port = await front({ routes: { 'fast.test': { target: app.url, timeouts: { response: 150 } }, 'patient.test': app.url } });
    const cut = await get(port, 'fast.test', `${PREFIX}/slow`);
    expect(cut.status).toBe(504);
    expect(cut.headers['proxy-status']).toBe('proxy; error=http_response_timeout');
    expect((await get(port, 'patient.test', `${PREFIX}/slow`)).body).toBe('late');
  });

  it("a route's connect timeout bounds its connect, and only its own", async () => {
    const blackhole = await startBlackholePort();
    running.push(blackhole);
    const port = await front({
      timeouts: { connect: 5000 },
      routes: { 'a.test': { target: blackhole.url, timeouts: { connect: 150 } } },
    });
    const started = performance.now();
    const answer = await get(port, 'a.test', `${PREFIX}/`);
    expect(answer.status).toBe(504);
    expect(answer.headers['proxy-status']).toBe('proxy; error=connection_timeout');
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it("changeOrigin, forwarded and rewriteLocation per route", async () => {
    const port = await front({
      routes: {
        'plain.test': app.url,
        'own.test': { target: app.url, changeOrigin: true, forwarded: false, rewriteLocation: false },
      },
    });
    app.seen.length = 0;
    await get(port, 'plain.test', `${PREFIX}/`);
    await get(port, 'own.test', `${PREFIX}/`);
    const [plain, own] = app.seen;
    expect(plain!.headers.host).toBe('plain.test');
    expect(plain!.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(own!.headers.host).toBe(`127.0.0.1:${app.port}`);
    expect(own!.headers['x-forwarded-for']).toBeUndefined();
    expect((await get(port, 'plain.test', `${PREFIX}/redirect`)).headers.location).toBe(`http://plain.test${PREFIX}/next`);
    expect((await get(port, 'own.test', `${PREFIX}/redirect`)).headers.location).toBe(`http://127.0.0.1:${app.port}/next`);
  });

  describe('pathRewrite', () => {
    it('replaces a whole-segment prefix, keeps the query, and is joined under the target path', async () => {
      const port = await front({
        routes: {
          'a.test': { target: app.url, pathRewrite: { '/api': '/v2', '/api/legacy': '/old', '/drop': '' } },
          'b.test': { target: `${app.url}/base`, pathRewrite: { '/api': '/v2' } },
        },
      });
      expect((await get(port, 'a.test', `${PREFIX}/api/users?id=1`)).body).toBe('path=/v2/users?id=1');
      expect((await get(port, 'a.test', `${PREFIX}/api?id=1`)).body).toBe('path=/v2?id=1');
      // Longest prefix first.
      expect((await get(port, 'a.test', `${PREFIX}/api/legacy/x`)).body).toBe('path=/old/x');
      // Not a segment of its own: untouched.
      expect((await get(port, 'a.test', `${PREFIX}/apiary`)).body).toBe('path=/apiary');
      expect((await get(port, 'a.test', `${PREFIX}/drop/x`)).body).toBe('path=/x');
      expect((await get(port, 'a.test', `${PREFIX}/drop`)).body).toBe('path=/');
      expect((await get(port, 'b.test', `${PREFIX}/api/users`)).body).toBe('path=/base/v2/users');
    });

    it('takes a function (path, req), proxy-wide or per route (the route wins)', async () => {
      const port = await front({
        pathRewrite: (path) => `/wide${path}`,
        routes: {
          'a.test': app.url,
          'b.test': { target: app.url, pathRewrite: (path, req) => `/own${path}?host=${req.headers.host}` },
        },
      });
      expect((await get(port, 'a.test', `${PREFIX}/x`)).body).toBe('path=/wide/x');
      expect((await get(port, 'b.test', `${PREFIX}/x`)).body).toBe('path=/own/x?host=b.test');
    });

    it('answers a result that is not a path with a 500 of its own, logged, and nothing goes upstream', async () => {
      const { logger, records } = captureLogs();
      const port = await front({
        logger,
        routes: {
          'abs.test': { target: app.url, pathRewrite: () => 'http://evil.test/' },
          'throws.test': {
            target: app.url,
            pathRewrite: () => {
              throw new Error('rewrite table missing');
            },
          },
        },
      });
      app.seen.length = 0;
      for (const host of ['abs.test', 'throws.test']) {
        const answer = await get(port, host, `${PREFIX}/x`);
        expect(answer.status).toBe(500);
        expect(answer.body).toBe('Internal Server Error');
        expect(answer.headers['proxy-status']).toBe('proxy; error=proxy_configuration_error');
      }
      expect(app.seen).toHaveLength(0);
      const logged = records.filter((record) => record.code === 'PATH_REWRITE_FAILED');
      expect(logged).toHaveLength(2);
      expect(JSON.stringify(logged)).toContain('rewrite table missing');
      expect(JSON.stringify(logged)).toContain('routes[\\"abs.test\\"].pathRewrite returned');
    });

    it('rewrites a WebSocket handshake’s path too', async () => {
      const server = http.createServer();
      const wss = new WebSocketServer({ server });
      wss.on('connection', (ws, req) => ws.send(req.url!));
      const wsApp = await listen(server);
      running.push(wsApp);
      const port = await front({ routes: { 'a.test': { target: wsApp.url, pathRewrite: { '/socket': '/ws/v2' } } } });
      const ws = new WebSocket(`ws://127.0.0.1:${port}${PREFIX}/socket?room=1`, { headers: { host: 'a.test' } });
      const message = await new Promise<string>((resolve, reject) => {
        ws.once('message', (data) => resolve(String(data)));
        ws.once('error', reject);
      });
      ws.close();
      expect(message).toBe('/ws/v2?room=1');
    });
  });

  describe('responseHeaders', () => {
    it('removes and sets headers on upstream responses, any case, with functions of the upstream response', async () => {
      const port = await front({
        responseHeaders: {
          remove: ['Server', 'x-powered-by', 'Access-Control-Allow-Origin'],
          set: {
            'Content-Security-Policy': "default-src 'self'",
            'X-Upstream-Status': (upstream) => `${upstream.statusCode} ${upstream.headers['content-type'] ?? 'none'}`,
            'X-Maybe': () => undefined,
          },
        },
        routes: { 'a.test': app.url },
      });
      const answer = await get(port, 'a.test', `${PREFIX}/`);
      expect(answer.status).toBe(200);
      expect(answer.headers.server).toBeUndefined();
      expect(answer.headers['x-powered-by']).toBeUndefined();
      expect(answer.headers['access-control-allow-origin']).toBeUndefined();
      expect(answer.headers['content-security-policy']).toBe("default-src 'self'");
      expect(answer.headers['x-upstream-status']).toBe('200 text/plain');
      expect(answer.headers['x-maybe']).toBeUndefined();
      // The rest as the upstream sent it.
      expect(answer.headers.etag).toBe('"v1"');
      expect(answer.body).toBe('path=/');
    });

    it("merges a route's own over the proxy's: its set gives a removed header a value, its remove drops a set one", async () => {
      const port = await front({
        responseHeaders: { remove: ['access-control-allow-origin', 'server'], set: { 'X-Frame-Options': 'DENY' } },
        routes: {
          'a.test': app.url,
          'cors.test': { target: app.url, responseHeaders: { set: { 'Access-Control-Allow-Origin': 'https://platform.test' }, remove: ['x-frame-options'] } },
        },
      });
      const plain = await get(port, 'a.test', `${PREFIX}/`);
      expect(plain.headers['access-control-allow-origin']).toBeUndefined();
      expect(plain.headers['x-frame-options']).toBe('DENY');
      const cors = await get(port, 'cors.test', `${PREFIX}/`);
      // Exactly one, the platform's: the upstream's own is gone.
      expect(cors.rawHeaders.filter((name) => name.toLowerCase() === 'access-control-allow-origin')).toHaveLength(1);
      expect(cors.headers['access-control-allow-origin']).toBe('https://platform.test');
      expect(cors.headers['x-frame-options']).toBeUndefined();
      expect(cors.headers.server).toBeUndefined();
    });

    it("never touches the proxy's own error responses", async () => {
      const dead = await closedPort();
      const port = await front({ responseHeaders: { set: { 'X-Frame-Options': 'DENY' } }, routes: { 'a.test': `http://127.0.0.1:${dead}` } });
      const answer = await get(port, 'a.test', `${PREFIX}/`);
      expect(answer.status).toBe(502);
      expect(answer.headers['x-frame-options']).toBeUndefined();
    });

    it('answers a set function that throws with a 500, logged, nothing of the upstream response sent', async () => {
      const { logger, records } = captureLogs();
      const port = await front({
        logger,
        routes: {
          'a.test': {
            target: app.url,
            responseHeaders: {
              set: {
                'X-Broken': () => {
                  throw new Error('header store down');
                },
              },
            },
          },
          'bad.test': { target: app.url, responseHeaders: { set: { 'X-Bad': () => 'a\nb' } } },
        },
      });
      for (const host of ['a.test', 'bad.test']) {
        const answer = await get(port, host, `${PREFIX}/`);
        expect(answer.status).toBe(500);
        expect(answer.body).toBe('Internal Server Error');
        expect(answer.headers.etag).toBeUndefined();
      }
      expect(JSON.stringify(records.filter((record) => record.level === 'error'))).toContain('header store down');
    });
  });

  it('refuses an unknown key in a route function’s result with a 500 naming it in the log', async () => {
    const { logger, records } = captureLogs();
    const port = await front({ logger, routes: () => ({ target: app.url, bodylimit: 5 }) as never });
    const answer = await get(port, 'a.test', `${PREFIX}/`);
    expect(answer.status).toBe(500);
    expect(JSON.stringify(records)).toContain('bodylimit');
  });
});
