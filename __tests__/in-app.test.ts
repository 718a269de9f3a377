import http, { type IncomingMessage } from 'node:http';
import { createGunzip, gunzipSync, gzipSync } from 'node:zlib';
import compression from 'compression';
import type { ErrorRequestHandler, Request } from 'express';
import qs from 'qs';
import { createProxy, type ProxyOptions, type ProxyRequest } from '../src/index.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { openRaw } from './helpers/raw-client.ts';
import {
  AUTH,
  delay,
  openWs,
  send,
  startRealApp,
  startRealUpstream,
  type ExpressFactory,
  type RealApp,
  type RealAppOptions,
  type RealUpstream,
  type Reply,
} from './helpers/real-app.ts';
import { listen } from './helpers/servers.ts';

/** Every Set-Cookie field line as received, in order. */
function setCookieLines(reply: Reply): string[] {
  const lines: string[] = [];
  for (let i = 0; i < reply.rawHeaders.length; i += 2) if (reply.rawHeaders[i]!.toLowerCase() === 'set-cookie') lines.push(reply.rawHeaders[i + 1]!);
  return lines;
}

/** All response field lines as one text, to search for a leaked address. */
function headerText(reply: Reply): string {
  const lines: string[] = [];
  for (let i = 0; i < reply.rawHeaders.length; i += 2) lines.push(`${reply.rawHeaders[i]}: ${reply.rawHeaders[i + 1]}`);
  return lines.join('\n');
}

function json(reply: Reply): Record<string, unknown> {
  return JSON.parse(reply.body.toString('utf8')) as Record<string, unknown>;
}

describe.each(EXPRESS_VERSIONS)('honest-proxy inside a real app (%s)', (_name, express: ExpressFactory) => {
  let upstream: RealUpstream;
  const apps: RealApp[] = [];
  const closers: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    upstream = await startRealUpstream();
  });
  afterAll(async () => {
    await upstream.close();
  });
  beforeEach(() => {
    upstream.seen.length = 0;
    upstream.upgrades.length = 0;
    upstream.sseWrites.length = 0;
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await Promise.all(closers.splice(0).map((close) => close()));
  });

  const routes = () => ({ 'app.localhost': upstream.url });

  async function start<Req extends IncomingMessage = ProxyRequest>(options: RealAppOptions<Req>): Promise<RealApp> {
    const app = await startRealApp(express, options);
    apps.push(app);
    return app;
  }

  const hostOf = (app: RealApp) => `app.localhost:${app.port}`;
  const authed = (app: RealApp, extra: http.OutgoingHttpHeaders = {}): http.OutgoingHttpHeaders => ({ host: hostOf(app), authorization: AUTH, ...extra });

  /* ---------------------------------------------------------------- 1 */
  describe('1. body parsers before the proxy', () => {
    test('default: 500 proxy_configuration_error at once, nothing upstream, one error record naming the fix', async () => {
      const app = await start({ proxy: { routes: routes() }, before: (e) => [e.json()] });
      const connectionsBefore = upstream.connections;
      const started = performance.now();
      const reply = await send(app.port, {
        method: 'POST',
        path: '/preview/items',
        headers: authed(app, { 'content-type': 'application/json' }),
        body: JSON.stringify({ name: 'x' }),
      });
      const elapsed = performance.now() - started;
      expect(reply.status).toBe(500);
      expect(elapsed).toBeLessThan(500);
      expect(reply.headers['proxy-status']).toBe('proxy; error=proxy_configuration_error');
      expect(reply.body.toString('utf8')).toBe('Internal Server Error');
      await delay(100);
      expect(upstream.seen).toHaveLength(0);
      expect(upstream.connections).toBe(connectionsBefore);
      const errors = app.records.filter((record) => record.level === 'error');
      expect(errors).toHaveLength(1);
      expect(String(errors[0]!.fix)).toContain('mount the proxy before body parsers');
      expect(String(errors[0]!.fix)).toContain("consumedBody: 'reserialize'");
    });

    test("reserialize: JSON arrives with the same meaning and a correct content-length", async () => {
      const app = await start({ proxy: { routes: routes(), consumedBody: 'reserialize' }, before: (e) => [e.json()] });
      const payload = { name: 'héllo ✓', nested: { list: [1, 2, { deep: true }], empty: null }, n: 1.5 };
      // Whitespace the parser discards: the bytes differ, the meaning must not.
      const reply = await send(app.port, {
        method: 'POST',
        path: '/preview/items?x=1',
        headers: authed(app, { 'content-type': 'application/json; charset=utf-8' }),
        body: JSON.stringify(payload, null, 2),
      });
      expect(reply.status).toBe(200);
      expect(upstream.seen).toHaveLength(1);
      const seen = upstream.seen[0]!;
      expect(seen.url).toBe('/items?x=1');
      expect(JSON.parse(seen.body.toString('utf8'))).toEqual(payload);
      expect(seen.headers['content-length']).toBe(String(seen.body.length));
      expect(seen.headers['transfer-encoding']).toBeUndefined();
      expect(seen.headers['content-type']).toBe('application/json; charset=utf-8');
    });

    test('reserialize: urlencoded (nested, arrays) arrives with the same meaning', async () => {
      const app = await start({ proxy: { routes: routes(), consumedBody: 'reserialize' }, before: (e) => [e.urlencoded({ extended: true })] });
      const form = 'a[b]=c&list=1&list=2&arr[]=x&arr[]=y&deep[k][0]=v&plain=hello+world&sym=%26%3D%3F';
      const reply = await send(app.port, {
        method: 'POST',
        path: '/preview/form',
        headers: authed(app, { 'content-type': 'application/x-www-form-urlencoded' }),
        body: form,
      });
      expect(reply.status).toBe(200);
      expect(upstream.seen).toHaveLength(1);
      const seen = upstream.seen[0]!;
      const expected = { a: { b: 'c' }, list: ['1', '2'], arr: ['x', 'y'], deep: { k: ['v'] }, plain: 'hello world', sym: '&=?' };
      expect(qs.parse(form)).toEqual(expected);
      expect(qs.parse(seen.body.toString('utf8'))).toEqual(expected);
      expect(seen.headers['content-length']).toBe(String(seen.body.length));
    });

    test('reserialize: text (express.text) arrives byte for byte', async () => {
      const app = await start({ proxy: { routes: routes(), consumedBody: 'reserialize' }, before: (e) => [e.text()] });
      const text = 'line one\nline two ✓ ünïcode\r\n';
      const reply = await send(app.port, { method: 'PUT', path: '/preview/note', headers: authed(app, { 'content-type': 'text/plain; charset=utf-8' }), body: text });
      expect(reply.status).toBe(200);
      const seen = upstream.seen[0]!;
      expect(seen.method).toBe('PUT');
      expect(seen.body.toString('utf8')).toBe(text);
      expect(seen.headers['content-length']).toBe(String(Buffer.byteLength(text)));
    });

    test('reserialize: a Buffer (express.raw) arrives byte for byte', async () => {
      const app = await start({ proxy: { routes: routes(), consumedBody: 'reserialize' }, before: (e) => [e.raw()] });
      const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) % 256));
      const reply = await send(app.port, { method: 'POST', path: '/preview/blob', headers: authed(app, { 'content-type': 'application/octet-stream' }), body: bytes });
      expect(reply.status).toBe(200);
      const seen = upstream.seen[0]!;
      expect(seen.body.equals(bytes)).toBe(true);
      expect(seen.headers['content-length']).toBe(String(bytes.length));
    });

    test('a content type the parser skipped is forwarded untouched (default options)', async () => {
      const app = await start({ proxy: { routes: routes() }, before: (e) => [e.json()] });
      const bytes = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 13) % 256));
      const reply = await send(app.port, { method: 'POST', path: '/preview/upload', headers: authed(app, { 'content-type': 'application/octet-stream' }), body: bytes });
      expect(reply.status).toBe(200);
      expect(reply.headers['proxy-status']).toBeUndefined();
      const seen = upstream.seen[0]!;
      expect(seen.body.equals(bytes)).toBe(true);
      expect(seen.headers['content-length']).toBe(String(bytes.length));
      expect(seen.headers['content-type']).toBe('application/octet-stream');
    });

    test('reserialize: a gzip-encoded JSON body arrives plain, without content-encoding', async () => {
      const app = await start({ proxy: { routes: routes(), consumedBody: 'reserialize' }, before: (e) => [e.json()] });
      const payload = { compressed: true, words: Array.from({ length: 50 }, (_, i) => `w${i}`) };
      const gz = gzipSync(Buffer.from(JSON.stringify(payload)));
      const reply = await send(app.port, {
        method: 'POST',
        path: '/preview/gz',
        headers: authed(app, { 'content-type': 'application/json', 'content-encoding': 'gzip' }),
        body: gz,
      });
      expect(reply.status).toBe(200);
      const seen = upstream.seen[0]!;
      expect(seen.headers['content-encoding']).toBeUndefined();
      expect(JSON.parse(seen.body.toString('utf8'))).toEqual(payload);
      expect(seen.headers['content-length']).toBe(String(seen.body.length));
    });
  });

  /* ---------------------------------------------------------------- 2 */
  describe('2. behind compression()', () => {
    test('an event stream reaches a gzip client event by event', async () => {
      const app = await start({ proxy: { routes: routes() }, before: () => [compression()] });
      const arrivals: Array<{ text: string; at: number }> = [];
      let decoded = '';
      const gunzip = createGunzip();
      gunzip.on('data', (chunk: Buffer) => {
        decoded += chunk.toString('utf8');
        arrivals.push({ text: decoded, at: performance.now() });
      });
      let encoding: string | undefined;
      const reply = await new Promise<Reply>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port: app.port, path: '/preview/sse', headers: authed(app, { 'accept-encoding': 'gzip', accept: 'text/event-stream' }), agent: false },
          (res) => {
            encoding = res.headers['content-encoding'];
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => {
              chunks.push(chunk);
              if (encoding === 'gzip') gunzip.write(chunk);
              else {
                decoded += chunk.toString('utf8');
                arrivals.push({ text: decoded, at: performance.now() });
              }
            });
            res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks), headAt: 0 }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      if (encoding === 'gzip') await new Promise<void>((resolve) => gunzip.end(resolve));
      expect(reply.status).toBe(200);
      expect(reply.headers['content-type']).toBe('text/event-stream');
      // compression() did apply: the stream on the wire is gzip, and only decodes to the events as a whole.
      expect(encoding).toBe('gzip');
      expect(reply.body.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
      expect(gunzipSync(reply.body).toString('utf8')).toBe(decoded);
      expect(decoded).toBe('id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n');
      expect(upstream.sseWrites).toHaveLength(3);
      const firstSeen = arrivals.find((a) => a.text.includes('data: event 1\n\n'))!;
      const secondSeen = arrivals.find((a) => a.text.includes('data: event 2\n\n'))!;
      // Event 1 was decodable before the upstream even wrote event 2 (~100 ms later).
      expect(firstSeen.at).toBeLessThan(upstream.sseWrites[1]!);
      expect(secondSeen.at).toBeLessThan(upstream.sseWrites[2]!);
    });

    test('an upstream response already content-encoding: gzip passes through unchanged', async () => {
      const app = await start({ proxy: { routes: routes() }, before: () => [compression()] });
      const reply = await send(app.port, { path: '/preview/gzip', headers: authed(app, { 'accept-encoding': 'gzip' }) });
      expect(reply.status).toBe(200);
      expect(reply.headers['content-encoding']).toBe('gzip');
      expect(reply.body.equals(upstream.gzipBody)).toBe(true);
      expect(gunzipSync(reply.body).toString('utf8')).toBe(upstream.bigJson);
    });

    test("an unencoded JSON response gets the app's compression and decompresses to the same JSON", async () => {
      const app = await start({ proxy: { routes: routes() }, before: () => [compression()] });
      const reply = await send(app.port, { path: '/preview/big-json', headers: authed(app, { 'accept-encoding': 'gzip' }) });
      expect(reply.status).toBe(200);
      expect(reply.headers['content-encoding']).toBe('gzip');
      expect(reply.body.length).toBeLessThan(Buffer.byteLength(upstream.bigJson));
      expect(gunzipSync(reply.body).toString('utf8')).toBe(upstream.bigJson);
    });
  });

  /* ---------------------------------------------------------------- 3 */
  describe('3. forwarded headers', () => {
    test('default: x-forwarded-for/-proto/-host/-port from this hop', async () => {
      const app = await start({ proxy: { routes: routes() } });
      const reply = await send(app.port, { path: '/preview/fwd', headers: authed(app) });
      expect(reply.status).toBe(200);
      const headers = upstream.seen[0]!.headers;
      expect(headers.host).toBe(hostOf(app));
      expect(headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(headers['x-forwarded-proto']).toBe('http');
      expect(headers['x-forwarded-host']).toBe(hostOf(app));
      expect(headers['x-forwarded-port']).toBe(String(app.port));
      expect(headers.forwarded).toBeUndefined();
      expect(headers.via).toBeUndefined();
    });

    test('changeOrigin: the upstream gets its own Host, x-forwarded-host keeps the client\'s', async () => {
      const app = await start({ proxy: { routes: routes(), changeOrigin: true } });
      await send(app.port, { path: '/preview/fwd', headers: authed(app) });
      const headers = upstream.seen[0]!.headers;
      expect(headers.host).toBe(`127.0.0.1:${upstream.port}`);
      expect(headers['x-forwarded-host']).toBe(hostOf(app));
      expect(headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(headers['x-forwarded-port']).toBe(String(app.port));
    });

    const forged = {
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil',
      forwarded: 'for=6.6.6.6',
      'x-forwarded-prefix': '/x',
    };

    test('an untrusted peer cannot forge forwarding headers', async () => {
      const app = await start({ proxy: { routes: routes() } });
      await send(app.port, { path: '/preview/fwd', headers: authed(app, { ...forged, 'x-forwarded-proto': 'https', 'x-forwarded-port': '443' }) });
      const headers = upstream.seen[0]!.headers;
      expect(headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(headers['x-forwarded-host']).toBe(hostOf(app));
      expect(headers['x-forwarded-proto']).toBe('http');
      expect(headers['x-forwarded-port']).toBe(String(app.port));
      expect(headers.forwarded).toBeUndefined();
      expect(headers['x-forwarded-prefix']).toBeUndefined();
    });

    test("trust proxy 'loopback': forwarding headers are kept and appended", async () => {
      const app = await start({ proxy: { routes: routes() }, trustProxy: 'loopback' });
      await send(app.port, { path: '/preview/fwd', headers: authed(app, forged) });
      const headers = upstream.seen[0]!.headers;
      expect(headers['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
      expect(headers['x-forwarded-host']).toBe('evil');
      expect(headers.forwarded).toBe('for=6.6.6.6');
      expect(headers['x-forwarded-prefix']).toBe('/x');
    });

    test("forwarded: 'rfc7239' sends Forwarded and no x-forwarded-*", async () => {
      const app = await start({ proxy: { routes: routes(), forwarded: 'rfc7239' } });
      await send(app.port, { path: '/preview/fwd', headers: { host: 'app.localhost', authorization: AUTH } });
      // With a port, the host is not a token and must be quoted (RFC 7239 4).
      await send(app.port, { path: '/preview/fwd', headers: authed(app) });
      const [plain, withPort] = upstream.seen.map((seen) => seen.headers);
      expect(plain!.forwarded).toBe('for=127.0.0.1;host=app.localhost;proto=http');
      expect(withPort!.forwarded).toBe(`for=127.0.0.1;host="${hostOf(app)}";proto=http`);
      for (const headers of [plain!, withPort!]) expect(Object.keys(headers).filter((name) => name.startsWith('x-forwarded-'))).toEqual([]);
    });

    test("forwarded: 'both' sends both, via: 'edge' appends Via", async () => {
      const app = await start({ proxy: { routes: routes(), forwarded: 'both', via: 'edge' } });
      await send(app.port, { path: '/preview/fwd', headers: { host: 'app.localhost', authorization: AUTH } });
      const headers = upstream.seen[0]!.headers;
      expect(headers.forwarded).toBe('for=127.0.0.1;host=app.localhost;proto=http');
      expect(headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(headers['x-forwarded-host']).toBe('app.localhost');
      expect(headers['x-forwarded-proto']).toBe('http');
      expect(headers['x-forwarded-port']).toBe('80');
      expect(headers.via).toBe('1.1 edge');
    });

    test("a plain node:http server with trustProxy: 'loopback' keeps and appends", async () => {
      const { logger } = captureLogs('debug');
      const proxy = createProxy({ routes: routes(), trustProxy: 'loopback', logger });
      const running = await listen(http.createServer(proxy));
      closers.push(async () => {
        await proxy.close({ timeout: 200 });
        await running.close();
      });
      const reply = await send(running.port, { path: '/plain?y=2', headers: { host: 'app.localhost', ...forged } });
      expect(reply.status).toBe(200);
      const seen = upstream.seen[0]!;
      expect(seen.url).toBe('/plain?y=2');
      expect(seen.headers['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
      expect(seen.headers['x-forwarded-host']).toBe('evil');
      expect(seen.headers.forwarded).toBe('for=6.6.6.6');
      expect(seen.headers['x-forwarded-prefix']).toBe('/x');
    });

    test('a proxied WebSocket upgrade carries the same forwarded headers (forged ones dropped)', async () => {
      const app = await start({ proxy: { routes: routes() } });
      const opened = await openWs(app.port, '/preview/ws', { host: hostOf(app), authorization: AUTH, 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6' });
      opened.ws.close();
      expect(upstream.upgrades).toHaveLength(1);
      const headers = upstream.upgrades[0]!.headers;
      expect(headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(headers['x-forwarded-proto']).toBe('http');
      expect(headers['x-forwarded-host']).toBe(hostOf(app));
      expect(headers['x-forwarded-port']).toBe(String(app.port));
      expect(headers.forwarded).toBeUndefined();
    });
  });

  /* ---------------------------------------------------------------- 4 */
  describe('4. rate limit keys on the trusted client address', () => {
    test('trust proxy off: forged X-Forwarded-For values share one limit', async () => {
      const app = await start({ proxy: { routes: routes(), rateLimit: { limit: 2, windowMs: 60_000 } } });
      const statuses: number[] = [];
      const replies: Reply[] = [];
      for (const xff of ['1.1.1.1', '2.2.2.2', '3.3.3.3']) {
        const reply = await send(app.port, { path: '/preview/rl', headers: authed(app, { 'x-forwarded-for': xff }) });
        statuses.push(reply.status);
        replies.push(reply);
      }
      expect(statuses).toEqual([200, 200, 429]);
      expect(replies[2]!.headers['proxy-status']).toBe('proxy; error=http_request_denied');
      expect(upstream.seen).toHaveLength(2);
    });

    test("trust proxy 'loopback': different X-Forwarded-For values get separate limits", async () => {
      const app = await start({ proxy: { routes: routes(), rateLimit: { limit: 2, windowMs: 60_000 } }, trustProxy: 'loopback' });
      const statuses: number[] = [];
      for (const xff of ['1.1.1.1', '2.2.2.2', '3.3.3.3', '1.1.1.1', '1.1.1.1']) {
        statuses.push((await send(app.port, { path: '/preview/rl', headers: authed(app, { 'x-forwarded-for': xff }) })).status);
      }
      expect(statuses).toEqual([200, 200, 200, 200, 429]);
    });

    test("express-rate-limit's validations still run: trust proxy true logs ERR_ERL_PERMISSIVE_TRUST_PROXY (at error, as express-rate-limit ranks it)", async () => {
      const app = await start({ proxy: { routes: routes(), rateLimit: { limit: 5, windowMs: 60_000 } }, trustProxy: true });
      const reply = await send(app.port, { path: '/preview/rl', headers: authed(app) });
      expect(reply.status).toBe(200);
      await delay(50);
      const mentioning = app.records
        .map((record) => ({ level: record.level, text: JSON.stringify(record) }))
        .filter((record) => record.text.includes('ERR_ERL_PERMISSIVE_TRUST_PROXY'));
      expect(mentioning).toEqual([{ level: 'error', text: expect.stringContaining('ERR_ERL_PERMISSIVE_TRUST_PROXY') }]);
    });
  });

  /* ---------------------------------------------------------------- 5 */
  describe('5. redirects', () => {
    const routesWithBase = () => ({ 'app.localhost': upstream.url, 'base.localhost': `${upstream.url}/base` });

    function redirect(app: RealApp, host: string, location: string, contentLocation?: string): Promise<Reply> {
      const query = new URLSearchParams({ location, ...(contentLocation !== undefined && { contentLocation }) });
      return send(app.port, { path: `/preview/redirect?${query}`, headers: { host, authorization: AUTH } });
    }

    function expectNoUpstreamAddress(reply: Reply) {
      const text = headerText(reply);
      expect(text).not.toMatch(new RegExp(`:${upstream.port}(?!\\d)`));
      expect(text).not.toContain(`127.0.0.1:${upstream.port}`);
    }

    test('Locations at the upstream become the client origin plus the mount path', async () => {
      const app = await start({ proxy: { routes: routesWithBase() } });
      const host = hostOf(app);
      const cases: Array<[string, string]> = [
        [`http://127.0.0.1:${upstream.port}/login?next=1`, `http://${host}/preview/login?next=1`],
        [`http://localhost:${upstream.port}/a`, `http://${host}/preview/a`],
        ['/login', '/preview/login'],
        ['https://other.example/x', 'https://other.example/x'],
      ];
      for (const [sent, expected] of cases) {
        const reply = await redirect(app, host, sent);
        expect(reply.status).toBe(302);
        expect(reply.headers.location).toBe(expected);
        expectNoUpstreamAddress(reply);
      }
    });

    test("a route target with a base path: its prefix is taken off", async () => {
      const app = await start({ proxy: { routes: routesWithBase() } });
      const host = `base.localhost:${app.port}`;
      const reply = await redirect(app, host, `http://127.0.0.1:${upstream.port}/base/x`, `http://127.0.0.1:${upstream.port}/base/doc`);
      expect(upstream.seen[0]!.url.startsWith('/base/redirect?')).toBe(true);
      expect(reply.headers.location).toBe(`http://${host}/preview/x`);
      expect(reply.headers['content-location']).toBe(`http://${host}/preview/doc`);
      expectNoUpstreamAddress(reply);
    });

    test('Content-Location is rewritten likewise', async () => {
      const app = await start({ proxy: { routes: routesWithBase() } });
      const host = hostOf(app);
      const absolute = await redirect(app, host, '/login', `http://127.0.0.1:${upstream.port}/doc/1`);
      expect(absolute.headers['content-location']).toBe(`http://${host}/preview/doc/1`);
      const relative = await redirect(app, host, '/login', '/doc/2');
      expect(relative.headers['content-location']).toBe('/preview/doc/2');
      expectNoUpstreamAddress(absolute);
      expectNoUpstreamAddress(relative);
    });

    test('rewriteLocation: false leaves both fields as the upstream sent them', async () => {
      const app = await start({ proxy: { routes: routesWithBase(), rewriteLocation: false } });
      const host = hostOf(app);
      const location = `http://127.0.0.1:${upstream.port}/login?next=1`;
      const reply = await redirect(app, host, location, `http://localhost:${upstream.port}/doc`);
      expect(reply.headers.location).toBe(location);
      expect(reply.headers['content-location']).toBe(`http://localhost:${upstream.port}/doc`);
      const relative = await redirect(app, host, '/login');
      expect(relative.headers.location).toBe('/login');
    });
  });

  /* ---------------------------------------------------------------- 6 */
  describe('6. cookies', () => {
    const original = ['a=1; Domain=upstream.internal; Path=/; HttpOnly', 'b=2; Path=/', 'c=3; Domain=other.example; Path=/x; Secure'];

    async function cookies(options: Omit<ProxyOptions, 'routes'> = {}, before?: RealAppOptions['before']): Promise<string[]> {
      const app = await start({ proxy: { routes: routes(), ...options }, ...(before && { before }) });
      const reply = await send(app.port, { path: '/preview/cookies', headers: authed(app) });
      expect(reply.status).toBe(200);
      return setCookieLines(reply);
    }

    test('default: Set-Cookie untouched, every line separate', async () => {
      expect(await cookies()).toEqual(original);
    });

    test("cookieDomain: 'preview.example' rewrites every Domain", async () => {
      expect(await cookies({ cookieDomain: 'preview.example' })).toEqual([
        'a=1; Domain=preview.example; Path=/; HttpOnly',
        'b=2; Path=/',
        'c=3; Domain=preview.example; Path=/x; Secure',
      ]);
    });

    test("cookieDomain: { 'upstream.internal': '' } removes that Domain only", async () => {
      expect(await cookies({ cookieDomain: { 'upstream.internal': '' } })).toEqual(['a=1; Path=/; HttpOnly', 'b=2; Path=/', 'c=3; Domain=other.example; Path=/x; Secure']);
    });

    test("cookiePath: { '/': '/preview/' } rewrites Path", async () => {
      expect(await cookies({ cookiePath: { '/': '/preview/' } })).toEqual([
        'a=1; Domain=upstream.internal; Path=/preview/; HttpOnly',
        'b=2; Path=/preview/',
        'c=3; Domain=other.example; Path=/x; Secure',
      ]);
    });

    test('behind compression(), multiple Set-Cookie lines still survive as separate lines', async () => {
      expect(await cookies({}, () => [compression()])).toEqual(original);
    });
  });

  /* ---------------------------------------------------------------- 7 */
  describe('7. fallthrough', () => {
    test("fallthrough: true: an unknown host is answered by the app's later routes, which can read the body", async () => {
      const app = await start({ proxy: { routes: routes(), fallthrough: true } });
      const get = await send(app.port, { path: '/preview/anything?q=1', headers: { host: 'nope.localhost', authorization: AUTH } });
      expect(get.status).toBe(200);
      expect(get.headers['proxy-status']).toBeUndefined();
      expect(json(get)).toMatchObject({ fallback: 'app fallback', method: 'GET', url: '/preview/anything?q=1' });

      const payload = { keep: 'me', n: [1, 2] };
      const post = await send(app.port, {
        method: 'POST',
        path: '/preview/form',
        headers: { host: 'nope.localhost', authorization: AUTH, 'content-type': 'application/json' },
        body: JSON.stringify(payload),
      });
      expect(post.status).toBe(200);
      expect(json(post)).toEqual({ fallback: 'app fallback', method: 'POST', url: '/preview/form', body: payload });

      const form = await send(app.port, {
        method: 'POST',
        path: '/preview/form',
        headers: { host: 'nope.localhost', authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'a[b]=c&l=1&l=2',
      });
      expect(json(form).body).toEqual({ a: { b: 'c' }, l: ['1', '2'] });
      expect(upstream.seen).toHaveLength(0);

      // A known host is still proxied.
      const known = await send(app.port, { path: '/preview/known', headers: authed(app) });
      expect(known.status).toBe(200);
      expect(upstream.seen.map((seen) => seen.url)).toEqual(['/known']);
    });

    test('default: an unknown host is a 404 with destination_not_found', async () => {
      const app = await start({ proxy: { routes: routes() } });
      const reply = await send(app.port, { path: '/preview/anything', headers: { host: 'nope.localhost', authorization: AUTH } });
      expect(reply.status).toBe(404);
      expect(reply.headers['proxy-status']).toBe('proxy; error=destination_not_found');
      expect(reply.body.toString('utf8')).toBe('Not Found');
    });
  });

  /* ---------------------------------------------------------------- 8 */
  describe('8. the route function gets the Express request', () => {
    test('(req: Request) => ... compiles without casts; hostname, ip, baseUrl are Express values', async () => {
      const calls: Array<{ hostname: string; ip: string | undefined; baseUrl: string; url: string; originalUrl: string }> = [];
      const route = (req: Request) => {
        calls.push({ hostname: req.hostname, ip: req.ip, baseUrl: req.baseUrl, url: req.url, originalUrl: req.originalUrl });
        return req.hostname === 'app.localhost' ? upstream.url : undefined;
      };
      const app = await start({ proxy: { routes: route } });
      const hit = await send(app.port, { path: '/preview/thing?x=1', headers: authed(app) });
      expect(hit.status).toBe(200);
      const miss = await send(app.port, { path: '/preview/thing', headers: { host: `other.localhost:${app.port}`, authorization: AUTH } });
      expect(miss.status).toBe(404);
      expect(miss.headers['proxy-status']).toBe('proxy; error=destination_not_found');
      expect(calls).toEqual([
        { hostname: 'app.localhost', ip: '127.0.0.1', baseUrl: '/preview', url: '/thing?x=1', originalUrl: '/preview/thing?x=1' },
        { hostname: 'other.localhost', ip: '127.0.0.1', baseUrl: '/preview', url: '/thing', originalUrl: '/preview/thing' },
      ]);
    });

    test("with trust proxy 'loopback', req.ip is Express's forwarded client address", async () => {
      const ips: Array<string | undefined> = [];
      const app = await start({
        proxy: {
          routes: (req: Request) => {
            ips.push(req.ip);
            return upstream.url;
          },
        },
        trustProxy: 'loopback',
      });
      await send(app.port, { path: '/preview/ip', headers: authed(app, { 'x-forwarded-for': '6.6.6.6' }) });
      expect(ips).toEqual(['6.6.6.6']);
    });
  });

  /* ---------------------------------------------------------------- 9 */
  describe('9. WebSockets stay in their lane', () => {
    test("the app's own ws server at /app-ws: a raw handshake gets ws's bytes only", async () => {
      const app = await start({ proxy: { routes: routes() } });
      const raw = await openRaw(app.port);
      await raw.write(
        'GET /app-ws HTTP/1.1\r\nHost: app.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      const deadline = Date.now() + 2000;
      while (!raw.received().includes('\r\n\r\n') && Date.now() < deadline) await delay(10);
      await delay(100);
      const head = raw.received().toString('latin1');
      expect(head.startsWith('HTTP/1.1 101 Switching Protocols\r\n')).toBe(true);
      expect(head).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n');
      expect(head.endsWith('\r\n\r\n')).toBe(true);
      // Exactly one response head, nothing after it.
      expect(head.split('HTTP/1.1').length).toBe(2);
      const headLength = raw.received().length;

      // A masked text frame "hi"; the echo is an unmasked text frame "hi".
      const mask = Buffer.from([1, 2, 3, 4]);
      const payload = Buffer.from('hi');
      const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!));
      await raw.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
      const until = Date.now() + 2000;
      while (raw.received().length < headLength + 4 && Date.now() < until) await delay(10);
      await delay(100);
      expect(raw.received().subarray(headLength)).toEqual(Buffer.from([0x81, 0x02, 0x68, 0x69]));
      expect(raw.closedByServer()).toBe(false);
      expect(app.appWsMessages).toEqual(['hi']);
      raw.destroy();
    });

    test('a ws client at /app-ws gets exactly its echoes, no error or close', async () => {
      const app = await start({ proxy: { routes: routes() } });
      const opened = await openWs(app.port, '/app-ws', { host: hostOf(app) });
      opened.ws.send('one');
      expect(await opened.next()).toBe('one');
      opened.ws.send('two');
      expect(await opened.next()).toBe('two');
      await delay(100);
      expect(opened.messages).toEqual(['one', 'two']);
      expect(opened.events).toEqual([]);
      expect(upstream.upgrades).toHaveLength(0);
      opened.ws.close();
    });

    test('a proxied WebSocket at /preview/ws echoes through the upstream', async () => {
      const app = await start({ proxy: { routes: routes() } });
      const opened = await openWs(app.port, '/preview/ws', { host: hostOf(app), authorization: AUTH });
      opened.ws.send('through the proxy');
      expect(await opened.next()).toBe('through the proxy');
      expect(upstream.upgrades.map((u) => u.url)).toEqual(['/ws']);
      expect(app.appWsMessages).toEqual([]);
      await delay(50);
      expect(opened.events).toEqual([]);
      opened.ws.close();
    });
  });

  /* ---------------------------------------------------------------- 10 */
  test('10. the upstream sees the same path for a WebSocket as for HTTP', async () => {
    const app = await start({ proxy: { routes: routes() } });
    const reply = await send(app.port, { path: '/preview/ws-path?x=1', headers: authed(app) });
    expect(reply.status).toBe(200);
    const opened = await openWs(app.port, '/preview/ws-path?x=1', { host: hostOf(app), authorization: AUTH });
    opened.ws.close();
    expect(upstream.seen.map((seen) => seen.url)).toEqual(['/ws-path?x=1']);
    expect(upstream.upgrades.map((u) => u.url)).toEqual(['/ws-path?x=1']);
  });

  /* ---------------------------------------------------------------- 11 */
  describe('11. auth gates upgrades', () => {
    test("without authorization: the app's 401, and no upgrade upstream", async () => {
      const app = await start({ proxy: { routes: routes() } });
      await expect(openWs(app.port, '/preview/ws', { host: hostOf(app) })).rejects.toThrow('Unexpected server response: 401');

      // The same refusal on a raw socket: a real HTTP response with the app's body.
      const raw = await openRaw(app.port);
      await raw.write(
        `GET /preview/ws HTTP/1.1\r\nHost: ${hostOf(app)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      expect(await raw.waitForResponses(1, 2000)).toBe(true);
      const [response] = raw.responses();
      expect(response!.status).toBe(401);
      expect(response!.body.toString('utf8')).toBe('{"error":"unauthorized"}');
      expect(await raw.waitForClose(2000)).toBe(true);
      raw.destroy();

      await delay(50);
      expect(upstream.upgrades).toHaveLength(0);
    });

    test('with authorization: it connects', async () => {
      const app = await start({ proxy: { routes: routes() } });
      const opened = await openWs(app.port, '/preview/ws', { host: hostOf(app), authorization: AUTH });
      opened.ws.send('ok');
      expect(await opened.next()).toBe('ok');
      expect(upstream.upgrades).toHaveLength(1);
      opened.ws.close();
    });
  });

  /* ---------------------------------------------------------------- 12 */
  describe("12. onError: 'next'", () => {
    test('an error handler after the proxy gets the ProxyError with status, expose and headers', async () => {
      const caught: unknown[] = [];
      const errorHandler: ErrorRequestHandler = (err, _req, res, _next) => {
        caught.push(err);
        res.status((err as { status: number }).status).type('text/plain').send('handled by the app');
      };
      const app = await start({ proxy: { routes: routes(), onError: 'next' }, errorHandler });
      const reply = await send(app.port, { path: '/preview/x', headers: { host: 'nope.localhost', authorization: AUTH } });
      expect(reply.status).toBe(404);
      expect(reply.body.toString('utf8')).toBe('handled by the app');
      expect(caught).toHaveLength(1);
      const err = caught[0] as { status: unknown; statusCode: unknown; expose: unknown; headers: Record<string, string> };
      expect(err.status).toBe(404);
      expect(err.statusCode).toBe(404);
      expect(err.expose).toBe(false);
      expect(err.headers['proxy-status']).toBe('proxy; error=destination_not_found');
      expect(typeof err.headers['x-request-id']).toBe('string');
      expect(err.headers['x-request-id']!.length).toBeGreaterThan(0);
    });

    test("Express's default final handler answers 404 with the proxy-status header", async () => {
      const app = await start({ proxy: { routes: routes(), onError: 'next' } });
      const reply = await send(app.port, { path: '/preview/x', headers: { host: 'nope.localhost', authorization: AUTH } });
      expect(reply.status).toBe(404);
      expect(reply.headers['proxy-status']).toBe('proxy; error=destination_not_found');
      expect(typeof reply.headers['x-request-id']).toBe('string');
    });
  });

  test('the app itself: /health is public, other app routes need auth', async () => {
    const app = await start({ proxy: { routes: routes() } });
    const health = await send(app.port, { path: '/health', headers: { host: hostOf(app) } });
    expect(health.status).toBe(200);
    expect(health.body.toString('utf8')).toBe('ok');
    const denied = await send(app.port, { path: '/preview/x', headers: { host: hostOf(app) } });
    expect(denied.status).toBe(401);
    expect(json(denied)).toEqual({ error: 'unauthorized' });
    expect(upstream.seen).toHaveLength(0);
  });
});
