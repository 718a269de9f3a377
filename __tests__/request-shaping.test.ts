import http, { type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Request, RequestHandler } from 'express';
import { WebSocketServer } from 'ws';
import { createProxy, portHostRoutes, ProxyOptionsError, UpstreamUnavailableError, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { resolveOptions } from '../src/options.ts';
import { withoutCookies } from '../src/upstream/request-shaping.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import { openRaw } from './helpers/raw-client.ts';
import { AUTH, delay, openWs, send, startRealApp, startRealUpstream, type ExpressFactory, type RealApp, type RealUpstream } from './helpers/real-app.ts';
import { listen, type Running } from './helpers/servers.ts';

/* -------------------------------------------------------------- helpers */

interface Recorded {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: string;
}

interface Recorder extends Running {
  seen: Recorded[];
  upgrades: Recorded[];
}

/** A real upstream that records every request's field lines as sent (and its trailers), and upgrades to an echoing WebSocket. */
async function startRecorder(): Promise<Recorder> {
  const seen: Recorded[] = [];
  const upgrades: Recorded[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, headers: req.headers, trailers: req.trailers, body: Buffer.concat(chunks).toString('latin1') });
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrades.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, headers: req.headers, trailers: {}, body: '' });
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (data) => ws.send(String(data))));
  });
  const running = await listen(server);
  const closeServer = running.close;
  return Object.assign(running, {
    seen,
    upgrades,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      await closeServer();
    },
  });
}

/** The values of every field line named `name` (any case), as sent. */
function lines(rawHeaders: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!);
  return values;
}

interface PlainProxy extends Running {
  proxy: HonestProxy;
  records: LogRecord[];
}

/** The proxy as a plain node:http server of its own, upgrades included. */
async function startPlainProxy(options: ProxyOptions): Promise<PlainProxy> {
  const { logger, records } = captureLogs('debug');
  const proxy = createProxy({ logger, ...options });
  const server = http.createServer(proxy);
  server.on('upgrade', proxy.upgrade);
  const running = await listen(server);
  const closeServer = running.close;
  return Object.assign(running, {
    proxy,
    records,
    close: async () => {
      await proxy.close({ timeout: 200 });
      await closeServer();
    },
  });
}

const WS_HANDSHAKE = 'Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';

/** One raw request on a connection of its own; resolves with the status of its response. */
async function rawRequest(port: number, head: string): Promise<number> {
  const raw = await openRaw(port);
  try {
    await raw.write(head);
    expect(await raw.waitForResponses(1, 2000)).toBe(true);
    return raw.responses()[0]!.status;
  } finally {
    raw.destroy();
  }
}

/* ------------------------------------------------------- in a real app */

// What a preview platform strips: its bearer token, its session cookie, its URL token.
const PLATFORM_SHAPING = {
  requestHeaders: {
    remove: ['authorization'],
    set: { 'x-preview-user': (req: IncomingMessage) => (req as IncomingMessage & { user?: { id: string } }).user?.id },
  },
  removeCookies: ['preview_session'],
  removeQuery: ['preview_token'],
} satisfies Partial<ProxyOptions>;

/** Plays the platform's auth: `req.user`, unless the test says the request is anonymous. */
const setUser: RequestHandler = (req, _res, next) => {
  if (req.headers['x-test-anonymous'] !== '1') (req as IncomingMessage & { user?: { id: string } }).user = { id: 'user-1' };
  next();
};

describe.each(EXPRESS_VERSIONS)('request shaping in a real app (%s)', (_name, express: ExpressFactory) => {
  let upstream: RealUpstream;
  const apps: RealApp[] = [];

  beforeAll(async () => {
    upstream = await startRealUpstream();
  });
  afterAll(async () => {
    await upstream.close();
  });
  beforeEach(() => {
    upstream.seen.length = 0;
    upstream.upgrades.length = 0;
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  async function start(proxy: Partial<ProxyOptions>, before: RequestHandler[] = [setUser]): Promise<RealApp> {
    const app = await startRealApp(express, { proxy: { routes: { 'app.localhost': upstream.url }, ...proxy }, before: () => before });
    apps.push(app);
    return app;
  }
  const hostOf = (app: RealApp) => `app.localhost:${app.port}`;

  test('HTTP: the app sees the token, cookie and query; the upstream sees none of them, and the user the app set', async () => {
    let seenByApp: IncomingMessage | undefined;
    const app = await start(PLATFORM_SHAPING, [setUser, (req, _res, next) => ((seenByApp = req), next())]);
    const reply = await send(app.port, {
      path: '/preview/page?a=1&preview_token=secret&b=x+y%20z',
      headers: { host: hostOf(app), authorization: AUTH, cookie: 'theme=dark; preview_session=s3cret; lang=en', 'x-preview-user': 'admin' },
    });
    expect(reply.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
    const seen = upstream.seen[0]!;
    expect(seen.url).toBe('/page?a=1&b=x+y%20z');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers.cookie).toBe('theme=dark; lang=en');
    // The client's own claim is replaced, not appended to.
    expect(seen.headers['x-preview-user']).toBe('user-1');
    // The app's request is as the client sent it.
    expect(seenByApp!.headers.authorization).toBe(AUTH);
    expect(seenByApp!.headers.cookie).toBe('theme=dark; preview_session=s3cret; lang=en');
    expect(seenByApp!.url).toContain('preview_token=secret');
  });

  test('a set function that returns undefined removes the header, even the one the client sent', async () => {
    const app = await start(PLATFORM_SHAPING);
    const reply = await send(app.port, { path: '/preview/x', headers: { host: hostOf(app), authorization: AUTH, 'x-test-anonymous': '1', 'x-preview-user': 'admin' } });
    expect(reply.status).toBe(200);
    expect(upstream.seen[0]!.headers['x-preview-user']).toBeUndefined();
  });

  test('WebSocket through the app: the upgrade request upstream has no token, cookie or query param', async () => {
    const app = await start(PLATFORM_SHAPING);
    const opened = await openWs(app.port, '/preview/ws?preview_token=secret&room=7', {
      host: hostOf(app),
      authorization: AUTH,
      cookie: 'preview_session=s3cret; theme=dark',
      'x-preview-user': 'admin',
    });
    opened.ws.send('hello');
    expect(await opened.next()).toBe('hello');
    opened.ws.close();
    expect(upstream.upgrades).toHaveLength(1);
    const upgrade = upstream.upgrades[0]!;
    expect(upgrade.url).toBe('/ws?room=7');
    expect(upgrade.headers.authorization).toBeUndefined();
    expect(upgrade.headers.cookie).toBe('theme=dark');
    expect(upgrade.headers['x-preview-user']).toBe('user-1');
  });

  test.each<[string, string]>([
    ['two Authorization lines', 'Authorization: Bearer good\r\nAuthorization: Bearer good\r\n'],
    ['upper case, then mixed case', 'AUTHORIZATION: Bearer good\r\naUtHoRiZaTiOn: Bearer other\r\n'],
    ['listed in Connection', 'Authorization: Bearer good\r\nConnection: keep-alive, authorization\r\n'],
    ['listed in Connection, upper case, on a second Connection line', 'Authorization: Bearer good\r\nConnection: keep-alive\r\nConnection: AUTHORIZATION\r\n'],
  ])('raw HTTP, %s: nothing of it upstream', async (_case, fields) => {
    const app = await start(PLATFORM_SHAPING);
    const status = await rawRequest(app.port, `GET /preview/raw HTTP/1.1\r\nHost: ${hostOf(app)}\r\n${fields}X-Preview-User: admin\r\n\r\n`);
    // The app's auth saw the token (no 401), and the request went upstream.
    expect(status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
    expect(upstream.seen[0]!.headers.authorization).toBeUndefined();
    expect(upstream.seen[0]!.headers['x-preview-user']).toBe('user-1');
  });

  test('raw WebSocket upgrade with Authorization twice, in two cases, and listed in Connection: nothing of it upstream', async () => {
    const app = await start(PLATFORM_SHAPING);
    const raw = await openRaw(app.port);
    await raw.write(
      `GET /preview/ws?preview_token=secret HTTP/1.1\r\nHost: ${hostOf(app)}\r\nAuthorization: Bearer good\r\nAUTHORIZATION: Bearer good\r\n` +
        `Connection: Upgrade, authorization\r\nCookie: preview_session=a\r\nCookie: preview_session=b\r\n${WS_HANDSHAKE}\r\n`,
    );
    expect(await raw.waitForResponses(1, 2000)).toBe(true);
    expect(raw.responses()[0]!.status).toBe(101);
    raw.destroy();
    expect(upstream.upgrades).toHaveLength(1);
    const upgrade = upstream.upgrades[0]!;
    expect(upgrade.url).toBe('/ws');
    expect(upgrade.headers.authorization).toBeUndefined();
    expect(upgrade.headers.cookie).toBeUndefined();
    expect(upgrade.headers['x-preview-user']).toBe('user-1');
  });

  test('a set function that throws: 500, one error record with its stack, nothing upstream (HTTP and WebSocket)', async () => {
    const app = await start({
      requestHeaders: {
        set: {
          'x-preview-user': () => {
            throw new Error('user store down');
          },
        },
      },
    });
    const connectionsBefore = upstream.connections;
    const reply = await send(app.port, { path: '/preview/x', headers: { host: hostOf(app), authorization: AUTH } });
    expect(reply.status).toBe(500);
    expect(reply.headers['proxy-status']).toBe('proxy; error=proxy_internal_error');
    expect(reply.body.toString('utf8')).toBe('Internal Server Error');

    await expect(openWs(app.port, '/preview/ws', { host: hostOf(app), authorization: AUTH })).rejects.toThrow('Unexpected server response: 500');
    await delay(50);
    expect(upstream.seen).toHaveLength(0);
    expect(upstream.upgrades).toHaveLength(0);
    expect(upstream.connections).toBe(connectionsBefore);
    const errors = app.records.filter((record) => record.level === 'error');
    expect(errors).toHaveLength(2);
    for (const record of errors) {
      expect(record.message).toBe('requestHeaders.set["x-preview-user"] threw');
      expect(record.code).toBe('INTERNAL_PROXY_ERROR');
      expect((record.cause as { message: string; stack: string }).message).toBe('user store down');
      expect((record.cause as { stack: string }).stack).toContain('request-shaping.test.ts');
    }
  });

  test('a set function that returns a value Node refuses (CR LF): 500, nothing upstream, the value never logged', async () => {
    const app = await start({ requestHeaders: { set: { 'x-preview-user': () => 'user-1\r\nX-Injected: yes' } } });
    const connectionsBefore = upstream.connections;
    const reply = await send(app.port, { path: '/preview/x', headers: { host: hostOf(app), authorization: AUTH } });
    expect(reply.status).toBe(500);
    await expect(openWs(app.port, '/preview/ws', { host: hostOf(app), authorization: AUTH })).rejects.toThrow('Unexpected server response: 500');
    await delay(50);
    expect(upstream.seen).toHaveLength(0);
    expect(upstream.upgrades).toHaveLength(0);
    expect(upstream.connections).toBe(connectionsBefore);
    const errors = app.records.filter((record) => record.level === 'error');
    expect(errors.map((record) => record.message)).toEqual([
      'requestHeaders.set["x-preview-user"] returned a value Node refuses as a header value',
      'requestHeaders.set["x-preview-user"] returned a value Node refuses as a header value',
    ]);
    expect(JSON.stringify(app.records)).not.toContain('X-Injected');
  });
});

/* --------------------------------------------------- a plain node:http proxy */

describe('request shaping, byte for byte', () => {
  let upstream: Recorder;
  const proxies: PlainProxy[] = [];

  beforeAll(async () => {
    upstream = await startRecorder();
  });
  afterAll(async () => {
    await upstream.close();
  });
  beforeEach(() => {
    upstream.seen.length = 0;
    upstream.upgrades.length = 0;
  });
  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  });

  async function start(options: Partial<ProxyOptions>, routes: ProxyOptions['routes'] = { 'app.localhost': upstream.url }): Promise<PlainProxy> {
    const proxy = await startPlainProxy({ routes, ...options });
    proxies.push(proxy);
    return proxy;
  }

  describe('removeQuery', () => {
    test.each<[string, string]>([
      ['/p?token=abc', '/p'],
      ['/p?a=1&token=abc&b=2', '/p?a=1&b=2'],
      ['/p?token=1&a=x+y&token=2&b=%20z&token', '/p?a=x+y&b=%20z'],
      ['/p?token', '/p'],
      ['/p?a=1&token', '/p?a=1'],
      ['/p?a=1&token=', '/p?a=1'],
      ['/p?&token=1', '/p'],
      ['/p?a=1&&token=1&b', '/p?a=1&&b'],
      // Names as a query parser reads them: %XX decoded, + a space.
      ['/p?tok%65n=1&a=1', '/p?a=1'],
      ['/p?auth+key=1&auth%20key=2&c=%2', '/p?c=%2'],
      ['/p?a=%E2%9C%93&token=x&c=%zz&d=%', '/p?a=%E2%9C%93&c=%zz&d=%'],
      // Not the names: kept as sent.
      ['/p?tokenx=1&xtoken=2&Token=3&a=token', '/p?tokenx=1&xtoken=2&Token=3&a=token'],
      ['/p/token=1?x=1', '/p/token=1?x=1'],
      ['/p?', '/p?'],
      ['/p?a=%zz', '/p?a=%zz'],
    ])('%s -> %s', async (sent, expected) => {
      const proxy = await start({ removeQuery: ['token', 'auth key'] });
      expect(await rawRequest(proxy.port, `GET ${sent} HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n`)).toBe(200);
      expect(upstream.seen.map((seen) => seen.url)).toEqual([expected]);
    });

    test('an absolute-form target, and a route target with a query of its own (kept: it is the operator’s)', async () => {
      const proxy = await start({ removeQuery: ['token'] }, { 'app.localhost': `${upstream.url}/base?token=route` });
      expect(await rawRequest(proxy.port, 'GET http://app.localhost/p?token=1&a=2 HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n')).toBe(200);
      expect(upstream.seen.map((seen) => seen.url)).toEqual(['/base/p?token=route&a=2']);
    });
  });

  describe('removeCookies', () => {
    test.each<[string, string[], string[]]>([
      ['first', ['sess=1; a=1; b=2'], ['a=1; b=2']],
      ['middle', ['a=1; sess=1; b=2'], ['a=1; b=2']],
      ['last', ['a=1; b=2; sess=1'], ['a=1; b=2']],
      ['without spaces: the separators as sent', ['a=1;sess=1;b=2'], ['a=1;b=2']],
      ['repeated, with values holding =', ['a=1; sess=1; sess=2; b=x=y'], ['a=1; b=x=y']],
      ['by pattern', ['__platform_csrf=x; a=1; __platform_id=y'], ['a=1']],
      ['all of them: no Cookie header at all', ['sess=1; __platform_csrf=x'], []],
      ['on two Cookie lines', ['a=1; sess=1', 'sess=2; b=2'], ['a=1; b=2']],
      ['on two lines, one all platform', ['sess=1', 'b=2'], ['b=2']],
      ['a nameless cookie is kept', ['value1; sess=1'], ['value1']],
      ['nothing but separators left: no Cookie header', ['sess=1; ; '], []],
      // Not the names: untouched, even the odd spacing.
      ['names are exact and case-sensitive', ['a=1;  sessx=2; xsess=3; Sess=4'], ['a=1;  sessx=2; xsess=3; Sess=4']],
      ['a value that looks like a name', ['a=sess=1; b=2'], ['a=sess=1; b=2']],
    ])('%s', async (_case, sent, expected) => {
      const proxy = await start({ removeCookies: ['sess', /^__platform_/] });
      const cookies = sent.map((value) => `Cookie: ${value}\r\n`).join('');
      expect(await rawRequest(proxy.port, `GET /p HTTP/1.1\r\nHost: app.localhost\r\n${cookies}Connection: close\r\n\r\n`)).toBe(200);
      expect(upstream.seen).toHaveLength(1);
      expect(lines(upstream.seen[0]!.rawHeaders, 'cookie')).toEqual(expected);
    });
  });

  test('the Cookie value itself: a removed first cookie takes the space after its ; with it', () => {
    const matcher = { names: new Set(['sess']), patterns: [] };
    expect(withoutCookies('sess=1; a=1; b=2', matcher)).toBe('a=1; b=2');
    expect(withoutCookies('a=1; sess=1', matcher)).toBe('a=1');
    expect(withoutCookies('a=1; b=2', matcher)).toBeUndefined();
  });

  describe('requestHeaders', () => {
    test('removed in every spelling, repeated, and in trailers; the client cannot strip or duplicate a set one', async () => {
      const proxy = await start({ requestHeaders: { remove: ['X-Api-Key', 'authorization'], set: { 'X-Platform-User': 'alice' } } });
      const chunked = '5\r\nhello\r\n0\r\nAuthorization: Bearer trailer\r\nX-Api-Key: trailer\r\n\r\n';
      const status = await rawRequest(
        proxy.port,
        'POST /p HTTP/1.1\r\nHost: app.localhost\r\nX-API-KEY: one\r\nx-api-key: two\r\nX-Api-Key: three\r\nAuthorization: Bearer a\r\n' +
          'x-platform-user: mallory\r\nX-PLATFORM-USER: eve\r\nConnection: x-platform-user, x-api-key\r\nConnection: close\r\n' +
          `Trailer: Authorization, X-Api-Key\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`,
      );
      expect(status).toBe(200);
      expect(upstream.seen).toHaveLength(1);
      const seen = upstream.seen[0]!;
      expect(lines(seen.rawHeaders, 'x-api-key')).toEqual([]);
      expect(lines(seen.rawHeaders, 'authorization')).toEqual([]);
      expect(lines(seen.rawHeaders, 'x-platform-user')).toEqual(['alice']);
      expect(seen.trailers).toEqual({});
      expect(seen.body).toBe('hello');
    });

    test('WebSocket straight to the proxy (proxy.upgrade): the same removals and values', async () => {
      const proxy = await start({ requestHeaders: { remove: ['authorization'], set: { 'x-platform-user': 'alice' } }, removeQuery: ['token'] });
      const raw = await openRaw(proxy.port);
      await raw.write(
        'GET /ws?token=1 HTTP/1.1\r\nHost: app.localhost\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\nX-Platform-User: eve\r\n' +
          `Connection: Upgrade, x-platform-user\r\n${WS_HANDSHAKE}\r\n`,
      );
      expect(await raw.waitForResponses(1, 2000)).toBe(true);
      expect(raw.responses()[0]!.status).toBe(101);
      raw.destroy();
      expect(upstream.upgrades).toHaveLength(1);
      const upgrade = upstream.upgrades[0]!;
      expect(upgrade.url).toBe('/ws');
      expect(lines(upgrade.rawHeaders, 'authorization')).toEqual([]);
      expect(lines(upgrade.rawHeaders, 'x-platform-user')).toEqual(['alice']);
      expect(lines(upgrade.rawHeaders, 'upgrade')).toEqual(['websocket']);
    });

    test('set and remove have the last word over the forwarding headers and the request id', async () => {
      const proxy = await start({ requestHeaders: { remove: ['x-forwarded-for', 'x-request-id'], set: { 'x-forwarded-proto': 'https' } } });
      expect(await rawRequest(proxy.port, 'GET /p HTTP/1.1\r\nHost: app.localhost\r\nX-Request-Id: abc\r\nConnection: close\r\n\r\n')).toBe(200);
      const seen = upstream.seen[0]!;
      expect(seen.headers['x-forwarded-for']).toBeUndefined();
      expect(seen.headers['x-request-id']).toBeUndefined();
      expect(seen.headers['x-forwarded-proto']).toBe('https');
      expect(seen.headers['x-forwarded-host']).toBe('app.localhost');
    });

    test('a set function gets the request and the route; an async one is awaited', async () => {
      const calls: unknown[] = [];
      const proxy = await start({
        requestHeaders: {
          set: {
            'x-route': (req, route) => {
              calls.push({ url: req.url, route });
              return `${route.host} ${route.targets.join(',')}`;
            },
            'x-later': async () => {
              await delay(20);
              return 'later';
            },
          },
        },
      });
      expect(await rawRequest(proxy.port, 'GET /p?q=1 HTTP/1.1\r\nHost: APP.localhost:80\r\nConnection: close\r\n\r\n')).toBe(200);
      expect(calls).toEqual([{ url: '/p?q=1', route: { host: 'app.localhost', targets: [`${upstream.url}/`] } }]);
      expect(upstream.seen[0]!.headers['x-route']).toBe(`app.localhost ${upstream.url}/`);
      expect(upstream.seen[0]!.headers['x-later']).toBe('later');
    });

    test.each<[string, () => unknown, number, RegExp | undefined]>([
      ['a number', () => 42, 500, /returned a number; expected a string or undefined/],
      ['null', () => null, 500, /returned null; expected a string or undefined/],
      ['a rejected promise', async () => Promise.reject(new Error('async failure')), 500, /threw/],
      ['a ProxyError it throws, as it chose', () => { throw new UpstreamUnavailableError('sandbox asleep'); }, 503, undefined],
    ])('a set function returning %s', async (_case, compute, status, message) => {
      const proxy = await start({ requestHeaders: { set: { 'x-value': compute as () => string } } });
      expect(await rawRequest(proxy.port, 'GET /p HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n')).toBe(status);
      expect(upstream.seen).toHaveLength(0);
      if (message) expect(proxy.records.filter((record) => record.level === 'error').map((record) => record.message)).toEqual([expect.stringMatching(message)]);
    });

    test('a set function that throws while an earlier one’s promise is still pending: no unhandled rejection', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      try {
        const proxy = await start({
          requestHeaders: {
            set: {
              'x-first': async () => {
                await delay(10);
                throw new Error('late');
              },
              'x-second': () => {
                throw new Error('at once');
              },
            },
          },
        });
        expect(await rawRequest(proxy.port, 'GET /p HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n')).toBe(500);
        await delay(100);
        expect(unhandled).toEqual([]);
        expect(upstream.seen).toHaveLength(0);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });
  });

  describe('per route', () => {
    const proxyWide = {
      requestHeaders: { remove: ['authorization', 'x-drop-global'], set: { 'x-platform': 'global', 'x-tenant': 'global' } },
      removeCookies: ['sess'],
      removeQuery: ['token'],
    } satisfies Partial<ProxyOptions>;
    const sent =
      'GET /p?token=1&sig=2&a=3 HTTP/1.1\r\nHost: HOST\r\nAuthorization: Bearer platform\r\nX-Drop-Global: 1\r\nX-Drop-Route: 1\r\nX-Tenant: client\r\n' +
      'Cookie: sess=1; route_sess=2; a=3\r\nX-Request-Id: same\r\nConnection: close\r\n\r\n';

    test("a route's own adds to the proxy-wide shaping and overrides it by name; other routes keep the proxy-wide one", async () => {
      const proxy = await start(proxyWide, {
        'merge.test': {
          target: upstream.url,
          requestHeaders: { remove: ['x-tenant', 'x-drop-route'], set: { 'x-platform': 'route', authorization: 'Basic c2FuZGJveA==' } },
          removeCookies: [/^route_/],
          removeQuery: ['sig'],
        },
        'plain.test': upstream.url,
      });
      for (let i = 0; i < 2; i++) expect(await rawRequest(proxy.port, sent.replace('HOST', 'merge.test'))).toBe(200);
      expect(await rawRequest(proxy.port, sent.replace('HOST', 'plain.test'))).toBe(200);
      const [merged, again, plain] = upstream.seen.map((seen) => ({ url: seen.url, headers: seen.headers }));
      expect(merged).toEqual(again);
      expect(merged!.url).toBe('/p?a=3');
      expect(merged!.headers).toMatchObject({ authorization: 'Basic c2FuZGJveA==', 'x-platform': 'route', cookie: 'a=3' });
      expect(merged!.headers['x-tenant']).toBeUndefined();
      expect(merged!.headers['x-drop-global']).toBeUndefined();
      expect(merged!.headers['x-drop-route']).toBeUndefined();
      expect(plain!.url).toBe('/p?sig=2&a=3');
      expect(plain!.headers).toMatchObject({ 'x-platform': 'global', 'x-tenant': 'global', 'x-drop-route': '1', cookie: 'route_sess=2; a=3' });
      expect(plain!.headers.authorization).toBeUndefined();
      expect(plain!.headers['x-drop-global']).toBeUndefined();
    });

    test('a route object from portHostRoutes (compiled per request) shapes HTTP and WebSocket', async () => {
      const proxy = await start(
        { requestHeaders: { remove: ['authorization'] } },
        portHostRoutes({
          domain: 'preview.test',
          resolve: (id) => ({ target: upstream.url, requestHeaders: { set: { 'x-sandbox': id } }, removeQuery: ['sig'] }),
        }),
      );
      expect(await rawRequest(proxy.port, 'GET /p?sig=1&a=2 HTTP/1.1\r\nHost: 3000-box1.preview.test\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n')).toBe(200);
      const opened = await openWs(proxy.port, '/ws?sig=1', { host: '3000-box2.preview.test', authorization: 'Bearer x' });
      opened.ws.close();
      expect(upstream.seen.map((seen) => [seen.url, seen.headers['x-sandbox'], seen.headers.authorization])).toEqual([['/p?a=2', 'box1', undefined]]);
      expect(upstream.upgrades.map((seen) => [seen.url, seen.headers['x-sandbox'], seen.headers.authorization])).toEqual([['/ws', 'box2', undefined]]);
    });
  });
});

/* ------------------------------------------------------------- options */

describe('request shaping options are checked at construction', () => {
  const routes = { 'a.test': 'http://127.0.0.1:3000' };
  const construct = (options: unknown) => () => createProxy(options as ProxyOptions);

  test.each<[string, unknown, RegExp]>([
    ['requestHeaders not an object', { requestHeaders: 'authorization' }, /^honest-proxy: requestHeaders must be an object \{ remove: \[names\], set/],
    ['an unknown requestHeaders key', { requestHeaders: { removes: [] } }, /unknown option "requestHeaders.removes"; did you mean "requestHeaders.remove"\?/],
    ['remove not an array', { requestHeaders: { remove: 'authorization' } }, /requestHeaders.remove must be an array; got "authorization"/],
    ['remove: not a header name', { requestHeaders: { remove: ['bad name'] } }, /requestHeaders.remove\[0\] must be a header name; got "bad name"/],
    ['remove: Host', { requestHeaders: { remove: ['x-a', 'Host'] } }, /requestHeaders.remove\[1\]: "Host" cannot be set or removed: the proxy routes by it/],
    ['remove: Content-Length', { requestHeaders: { remove: ['content-length'] } }, /requestHeaders.remove\[0\]: "content-length" cannot be set or removed: it frames the body/],
    ['set not an object', { requestHeaders: { set: ['x-a'] } }, /requestHeaders.set must be an object/],
    ['set: a number', { requestHeaders: { set: { 'x-a': 1 } } }, /requestHeaders.set\["x-a"\] must be a string or a function \(req, route\) => string \| undefined; got 1/],
    ['set: not a header name', { requestHeaders: { set: { 'x a': 'v' } } }, /requestHeaders.set\["x a"\] must be a header name/],
    ['set: CR LF in a value', { requestHeaders: { set: { 'x-a': 'v\r\nx-b: w' } } }, /requestHeaders.set\["x-a"\] has a character Node refuses in a header value/],
    ['set: one name twice', { requestHeaders: { set: { 'X-A': 'a', 'x-a': 'b' } } }, /requestHeaders.set\["x-a"\]: "x-a" is set twice/],
    ['a name both removed and set', { requestHeaders: { remove: ['x-a'], set: { 'X-A': 'v' } } }, /requestHeaders.set\["X-A"\]: "X-A" is both removed and set/],
    ['removeCookies not an array', { removeCookies: 'sess' }, /^honest-proxy: removeCookies must be an array; got "sess"/],
    ['removeCookies: not a cookie name', { removeCookies: ['a b'] }, /removeCookies\[0\] must be a cookie name or a RegExp; got "a b"/],
    ['removeCookies: a number', { removeCookies: [5] }, /removeCookies\[0\] must be a cookie name or a RegExp; got 5/],
    ['removeCookies: a global RegExp', { removeCookies: [/^sess/g] }, /removeCookies\[0\]: a RegExp with the g or y flag keeps state between tests/],
    ['removeCookies: a sticky RegExp', { removeCookies: ['a', /^sess/y] }, /removeCookies\[1\]: a RegExp with the g or y flag/],
    ['removeQuery not an array', { removeQuery: 'token' }, /^honest-proxy: removeQuery must be an array; got "token"/],
    ['removeQuery: an empty name', { removeQuery: [''] }, /removeQuery\[0\] must be a query parameter name; got ""/],
    ['removeQuery: not a string', { removeQuery: [/token/] }, /removeQuery\[0\] must be a query parameter name; got an object/],
    ['a route: set Host', { routes: { 'a.test': { target: 'http://127.0.0.1:3000', requestHeaders: { set: { host: 'x' } } } } }, /routes\["a.test"\].requestHeaders.set\["host"\]: "host" cannot be set or removed/],
    ['a route: removeQuery not an array', { routes: { 'a.test': { target: 'http://127.0.0.1:3000', removeQuery: 'sig' } } }, /routes\["a.test"\].removeQuery must be an array/],
    ['a route: removeCookies with a global RegExp', { routes: { 'a.test': { target: 'http://127.0.0.1:3000', removeCookies: [/x/g] } } }, /routes\["a.test"\].removeCookies\[0\]: a RegExp with the g or y flag/],
  ])('rejects %s', (_case, options, message) => {
    const attempt = construct({ routes, ...(options as object) });
    expect(attempt).toThrow(ProxyOptionsError);
    expect(attempt).toThrow(message);
  });

  test.each(['Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'Upgrade', 'TE', 'Keep-Alive', 'Trailer', 'Proxy-Connection', 'Proxy-Authorization', 'Expect'])(
    'set: %s is the proxy’s to decide',
    (name) => {
      expect(construct({ routes, requestHeaders: { set: { [name]: 'x' } } })).toThrow(new RegExp(`requestHeaders.set\\["${name}"\\]: "${name}" cannot be set or removed`));
    },
  );

  test('a CR LF value is not repeated in the message (it may be a secret)', () => {
    expect(construct({ routes, requestHeaders: { set: { 'x-a': 'secret\r\n' } } })).toThrow(expect.objectContaining({ message: expect.not.stringContaining('secret') }));
  });

  test("set functions may take Express's Request, proxy-wide and on a route", () => {
    const proxy = createProxy({
      routes: { 'a.test': { target: 'http://127.0.0.1:3000', requestHeaders: { set: { 'x-ip': (req: Request) => req.ip } } } },
      requestHeaders: { set: { 'x-host': (req: Request) => req.hostname } },
    });
    expect(typeof proxy).toBe('function');
  });

  test('unset or empty shaping compiles to nothing: no work per request', () => {
    expect(resolveOptions({ routes }).requestShaping).toBeUndefined();
    expect(resolveOptions({ routes, requestHeaders: {}, removeCookies: [], removeQuery: [] }).requestShaping).toBeUndefined();
    expect(resolveOptions({ routes, requestHeaders: { remove: [], set: {} } }).requestShaping).toBeUndefined();
    expect(resolveOptions({ routes, removeQuery: ['token'] }).requestShaping).toBeDefined();
  });
});
