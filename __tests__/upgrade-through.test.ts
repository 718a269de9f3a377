import http from 'node:http';
import { createProxy, ProxyOptionsError, type HonestProxy } from '../src/index.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { openWs, startRealUpstream, type RealUpstream } from './helpers/real-app.ts';
import { header, sendRaw } from './helpers/scripted-upstream.ts';
import { listen, type Running } from './helpers/servers.ts';

// `proxy.upgradeThrough(app, mountPath)`: which upgrades it takes (at or below
// the mount path, nothing else), what it does with an upgrade to anything but
// WebSocket (plain HTTP/1.1 through the app, then close), and the mount path
// it refuses at the call, before any upgrade arrives.

const HOST = 'app.localhost';
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const WEBSOCKET = `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n`;
const H2C = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';

/** A WebSocket through the proxy, or a failure after 2 s: an upgrade nobody takes never answers. */
function openSoon(port: number, path: string): ReturnType<typeof openWs> {
  const late = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`no handshake at ${path} within 2 s`)), 2000).unref());
  return Promise.race([openWs(port, path, { host: HOST }), late]);
}

describe('upgradeThrough(app, mountPath) at the call', () => {
  const { logger } = captureLogs('debug');
  const proxy = createProxy({ routes: { [HOST]: 'http://127.0.0.1:1' }, logger });
  const app = (_req: http.IncomingMessage, res: http.ServerResponse) => res.end();
  afterAll(async () => {
    await proxy.close({ timeout: 0 });
  });

  it.each<[string, unknown]>([
    ['a path without its leading slash', 'preview'],
    ['an empty string', ''],
    ['undefined', undefined],
    ['a number', 42],
    ['a URL', 'http://example.test/preview'],
  ])('throws a ProxyOptionsError for %s, naming the value', (_case, mountPath) => {
    let thrown: unknown;
    try {
      proxy.upgradeThrough(app, mountPath as string);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect(thrown).toMatchObject({
      code: 'ERR_HONEST_PROXY_OPTIONS',
      message: `honest-proxy: upgradeThrough(app, mountPath): mountPath must be the path the proxy is mounted at, such as '/preview'; got ${JSON.stringify(mountPath)}`,
    });
  });

  it('throws a ProxyOptionsError when app is not a function', () => {
    expect(() => proxy.upgradeThrough({} as unknown as typeof app, '/preview')).toThrow(
      new ProxyOptionsError('upgradeThrough(app, mountPath): app must be the Express app (a function (req, res)); got object'),
    );
  });

  it.each(['/preview', '/preview/', '/'])('returns an upgrade listener for %s', (mountPath) => {
    const listener = proxy.upgradeThrough(app, mountPath);
    expect(typeof listener).toBe('function');
    expect(listener.length).toBe(3);
  });
});

describe.each(EXPRESS_VERSIONS)('upgradeThrough(app, mountPath) (%s)', (_name, express) => {
  let upstream: RealUpstream;

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

  interface App extends Running {
    proxy: HonestProxy;
    /** req.url of every upgrade the server's first listener saw, before upgradeThrough's. */
    serverSaw: string[];
    /** req.originalUrl of every request the app handled (upgrades included). */
    appSaw: string[];
  }

  const apps: App[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) {
      await app.proxy.close({ timeout: 100 });
      await app.close();
    }
  });

  /** The proxy at /preview behind a gate that refuses `x-deny`, an app fallback after it, and upgradeThrough(app, `given`). */
  async function start(given: string): Promise<App> {
    const { logger } = captureLogs('debug');
    const proxy = createProxy({ routes: { [HOST]: upstream.url }, logger });
    const app = express();
    const appSaw: string[] = [];
    app.use((req, res, next) => {
      appSaw.push(req.originalUrl);
      if (req.headers['x-deny']) res.status(403).type('text/plain').send('denied by the app');
      else next();
    });
    app.use('/preview', proxy);
    app.use((req, res) => {
      res.status(200).type('text/plain').send(`app fallback ${req.originalUrl}`);
    });
    const server = http.createServer(app);
    const serverSaw: string[] = [];
    server.on('upgrade', (req: http.IncomingMessage) => serverSaw.push(req.url!));
    server.on('upgrade', proxy.upgradeThrough(app, given));
    const running = Object.assign(await listen(server), { proxy, serverSaw, appSaw });
    apps.push(running);
    return running;
  }

  describe.each(['/preview', '/preview/'])('mounted as %j', (given) => {
    it.each([
      ['/preview', '/'],
      ['/preview/x', '/x'],
      ['/preview?x', '/?x'],
      ['/preview/x/y?z=1', '/x/y?z=1'],
      // Express matches a mount in any case: so does upgradeThrough, or the upgrade would hang with nobody to answer it.
      ['/PREVIEW/x', '/x'],
      ['/Preview', '/'],
    ])('proxies a WebSocket at %s; the upstream sees %s', async (path, upstreamPath) => {
      const app = await start(given);
      const opened = await openSoon(app.port, path);
      opened.ws.send(`hello ${path}`);
      expect(await opened.next()).toBe(`hello ${path}`);
      opened.ws.close();
      expect(upstream.upgrades.map((u) => u.url)).toEqual([upstreamPath]);
      expect(app.appSaw).toEqual([path]);
    });

    it.each([
      ['a WebSocket', '/previewx', WEBSOCKET],
      ['a WebSocket', '/other', WEBSOCKET],
      ['a WebSocket', '/prev', WEBSOCKET],
      ['a WebSocket', '/other/preview', WEBSOCKET],
      ['an h2c upgrade', '/previewx', H2C],
    ])('leaves %s at %s alone: not a byte written, the socket open, the app never called', async (_kind, path, fields) => {
      const app = await start(given);
      const ex = await sendRaw(app.port, `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n${fields}\r\n`, { timeoutMs: 300 });
      expect(app.serverSaw).toEqual([path]);
      expect({ timedOut: ex.timedOut, closed: ex.closed, bytes: ex.raw.length }).toEqual({ timedOut: true, closed: false, bytes: 0 });
      expect(app.appSaw).toEqual([]);
      expect(upstream.upgrades).toEqual([]);
      expect(upstream.seen).toEqual([]);
    });
  });

  it("with mountPath '/', every upgrade is the app's, and the proxy takes those that reach its mount", async () => {
    const app = await start('/');
    const opened = await openSoon(app.port, '/preview/x');
    opened.ws.close();
    expect(upstream.upgrades.map((u) => u.url)).toEqual(['/x']);
    // Outside the proxy's mount the app answers an upgrade itself, like any request.
    const ex = await sendRaw(app.port, `GET /other HTTP/1.1\r\nHost: ${HOST}\r\n${WEBSOCKET}\r\n`, { timeoutMs: 1000 });
    expect(ex.final?.status).toBe(200);
    expect(ex.final?.body.toString()).toBe('app fallback /other');
    expect(ex.closed).toBe(true);
    expect(upstream.upgrades).toHaveLength(1);
  });

  describe('an upgrade to anything but WebSocket (Upgrade: h2c)', () => {
    it('goes through the app to the proxy as plain HTTP/1.1: the upstream response, mount path stripped, no upgrade fields upstream, then close', async () => {
      const app = await start('/preview');
      const ex = await sendRaw(app.port, `GET /preview/x?q=1 HTTP/1.1\r\nHost: ${HOST}\r\n${H2C}\r\n`, { timeoutMs: 1000, lingerMs: 50 });
      expect(ex.responses.map((r) => r.statusLine)).toEqual(['HTTP/1.1 200 OK']);
      expect(header(ex.final, 'connection')).toBe('close');
      expect(ex.closed).toBe(true);
      expect(app.appSaw).toEqual(['/preview/x?q=1']);
      expect(upstream.upgrades).toEqual([]);
      expect(upstream.seen.map((s) => s.url)).toEqual(['/x?q=1']);
      const sent = upstream.seen[0]!.headers;
      expect(sent.upgrade).toBeUndefined();
      expect(sent['http2-settings']).toBeUndefined();
      expect(String(sent.connection)).not.toMatch(/upgrade/i);
      // The client reads the upstream's answer to the request it sent, as HTTP/1.1.
      expect(JSON.parse(ex.final!.body.toString()) as { url: string }).toMatchObject({ method: 'GET', url: '/x?q=1' });
    });

    it("is answered by a middleware before the proxy, on the same socket: the app's 403, then close", async () => {
      const app = await start('/preview');
      const ex = await sendRaw(app.port, `GET /preview/x HTTP/1.1\r\nHost: ${HOST}\r\nX-Deny: 1\r\n${H2C}\r\n`, { timeoutMs: 1000, lingerMs: 50 });
      expect(ex.responses.map((r) => r.status)).toEqual([403]);
      expect(ex.final!.body.toString()).toBe('denied by the app');
      expect(ex.closed).toBe(true);
      expect(upstream.seen).toEqual([]);
    });

    it('with a declared body is refused 400 by the proxy before the app runs: Node parses no body on an upgrade', async () => {
      const app = await start('/preview');
      const ex = await sendRaw(app.port, `POST /preview/x HTTP/1.1\r\nHost: ${HOST}\r\n${H2C}Content-Length: 5\r\n\r\nhello`, { timeoutMs: 1000, lingerMs: 50 });
      expect(ex.responses.map((r) => r.status)).toEqual([400]);
      expect(header(ex.final, 'proxy-status')).toBe('proxy; error=http_request_error');
      expect(ex.closed).toBe(true);
      expect(app.appSaw).toEqual([]);
      expect(upstream.seen).toEqual([]);
    });
  });
});
