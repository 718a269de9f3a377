// Issue #4: end to end, against a real dev server. A preview proxy kept a
// pooled keep-alive connection to a Vite dev server, Vite closed it when idle,
// the proxy reused the dead socket and users saw errors while Vite was fine.
// Here a real Vite 8 dev server sits behind honest-proxy, a client walks the
// page's module graph, holds the HMR WebSocket open, idles past Vite's
// keep-alive timeout and walks the graph again: nothing may fail.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { createProxy, type HonestProxy } from '../src/index.ts';
import type { ServeMessage, ViteConnection } from './fixtures/vite-app/serve.ts';
import { captureLogs } from './helpers/logs.ts';
import { listen, type Running } from './helpers/servers.ts';

// Vite accepts any `*.localhost` Host by default (its allowedHosts check
// special-cases localhost), so no `server.allowedHosts` is needed.
const HOST = 'vite.localhost';
const SERVE = path.join(import.meta.dirname, 'fixtures', 'vite-app', 'serve.ts');

interface Fetched {
  status: number;
  contentType: string | undefined;
  body: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The next IPC message of `type` from the Vite process, or a failure if it exits or takes too long. */
function nextMessage<T extends ServeMessage['type']>(child: ChildProcess, type: T, timeoutMs: number): Promise<Extract<ServeMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`Vite process: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: ServeMessage) => {
      if (message.type === type) finish(undefined, message as Extract<ServeMessage, { type: T }>);
    };
    const onExit = (code: number | null) => finish(new Error(`Vite process exited (${code}) before '${type}'`));
    function finish(err?: Error, message?: Extract<ServeMessage, { type: T }>) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(message!);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

describe('honest-proxy in front of a real Vite dev server', () => {
  const { logger, records } = captureLogs('debug');
  let root: string;
  let vite: ChildProcess;
  let idleCloseMs: number;
  let proxy: HonestProxy;
  let front: Running;
  let hmr: WebSocket | undefined;

  beforeAll(async () => {
    // A temp dir rather than a committed fixture: the test edits a module on
    // disk, and Vite writes its deps cache into the project.
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'honest-proxy-vite-'));
    fs.writeFileSync(
      path.join(root, 'index.html'),
      '<!doctype html>\n<html>\n<body>\n<script type="module" src="/main.js"></script>\n</body>\n</html>\n',
    );
    fs.writeFileSync(path.join(root, 'main.js'), "import { message } from './dep.js';\ndocument.body.append(message);\n");
    fs.writeFileSync(path.join(root, 'dep.js'), "export const message = 'hello from dep';\n");

    // Not in this process: see serve.ts for why Vite cannot run in Jest's sandbox.
    vite = fork(SERVE, [root], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const ready = await nextMessage(vite, 'ready', 15_000);
    idleCloseMs = ready.idleCloseMs;

    proxy = createProxy({ routes: { [HOST]: `http://127.0.0.1:${ready.port}` }, logger });
    const server = http.createServer((req, res) => proxy(req, res));
    server.on('upgrade', (req, socket, head) => proxy.upgrade(req, socket, head));
    front = await listen(server);
  }, 20_000);

  afterAll(async () => {
    hmr?.terminate();
    proxy?.close();
    await front?.close();
    if (vite && vite.exitCode === null && vite.signalCode === null) {
      const exited = new Promise((resolve) => vite.once('exit', resolve));
      vite.send({ type: 'close' });
      // vite.close() is quick; a process that hangs anyway must not outlive the suite.
      const timer = setTimeout(() => vite.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  async function viteConnections(): Promise<ViteConnection[]> {
    const reply = nextMessage(vite, 'connections', 5_000);
    vite.send({ type: 'connections' });
    return (await reply).connections;
  }

  /**
   * One GET through the proxy on a connection of its own: the client-to-proxy
   * hop is not what is under test, so no client-side pool can muddy it.
   */
  function get(pathname: string, accept = '*/*'): Promise<Fetched> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: front.port, path: pathname, agent: false, headers: { host: HOST, accept } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, contentType: res.headers['content-type'], body }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(5_000, () => req.destroy(new Error(`GET ${pathname} timed out`)));
    });
  }

  // Static imports only, anchored at the start of a line: Vite's served
  // modules carry 100+ kB single-line inline source maps, and an unanchored
  // `.*` pattern over them is slow enough to stall the event loop.
  const IMPORT = /^\s*import\s*(?:[^'"\n]*?\sfrom\s*)?["'](\/[^"'\n]+)["']/gm;

  /** Loads the page and every module it reaches, as a browser would; returns what each URL answered. */
  async function loadPage(): Promise<Map<string, Fetched>> {
    const loaded = new Map<string, Fetched>();
    const page = await get('/', 'text/html,application/xhtml+xml');
    loaded.set('/', page);
    const queue = [...page.body.matchAll(/<script type="module" src="([^"]+)"/g)].map((m) => m[1]!);
    // A handful of modules in this app; the bound only guards against a crawl gone wrong.
    while (queue.length > 0 && loaded.size < 20) {
      const url = queue.shift()!;
      if (loaded.has(url)) continue;
      const module = await get(url);
      loaded.set(url, module);
      for (const m of module.body.matchAll(IMPORT)) queue.push(m[1]!);
    }
    return loaded;
  }

  function expectHealthyPage(loaded: Map<string, Fetched>): void {
    const page = loaded.get('/')!;
    expect(page.status).toBe(200);
    expect(page.contentType).toMatch(/^text\/html/);
    expect(page.body).toContain('<script type="module" src="/@vite/client"></script>');
    expect(page.body).toContain('<script type="module" src="/main.js"></script>');

    // The whole graph, Vite's client and its env module included, as one list
    // so a failure shows every URL at once.
    const modules = [...loaded].filter(([url]) => url !== '/');
    expect(modules.map(([url]) => url)).toEqual(expect.arrayContaining(['/@vite/client', '/main.js', '/dep.js']));
    expect(modules.map(([url, r]) => [url, r.status, r.contentType])).toEqual(modules.map(([url]) => [url, 200, 'text/javascript']));

    // Transformed by Vite, not served raw: the bare relative import is rewritten.
    expect(loaded.get('/main.js')!.body).toMatch(/^import \{ message \} from "\/dep\.js";/);
    expect(loaded.get('/dep.js')!.body).toContain("export const message = 'hello from dep';");
  }

  /** Opens the HMR socket through the proxy exactly as Vite's client does, collecting every message from the first frame on. */
  function connectHmr(token: string): Promise<{ ws: WebSocket; messages: string[] }> {
    return new Promise((resolve, reject) => {
      const messages: string[] = [];
      // The Origin makes Vite check the token, as it does for a browser; the
      // `vite-hmr` subprotocol is what routes the upgrade to Vite's HMR server.
      const ws = new WebSocket(`ws://127.0.0.1:${front.port}/?token=${encodeURIComponent(token)}`, 'vite-hmr', {
        headers: { host: HOST, origin: `http://${HOST}:${front.port}` },
        handshakeTimeout: 5_000,
      });
      // Vite sends `connected` with its 101, in the same packet: listen before 'open'.
      ws.on('message', (data) => messages.push(String(data)));
      ws.once('open', () => resolve({ ws, messages }));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        const proxyStatus = res.headers['proxy-status'];
        reject(new Error(`HMR upgrade refused: ${res.statusCode} (${proxyStatus ? `Proxy-Status: ${proxyStatus}` : 'no Proxy-Status'})`));
      });
      ws.once('error', reject);
    });
  }

  async function waitFor<T>(what: string, find: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(25);
    }
  }

  const parsed = (messages: string[]) => messages.map((m) => JSON.parse(m) as { type: string; [key: string]: unknown });

  it('serves the page, its modules and HMR, before and after Vite drops idle connections', async () => {
    const first = await loadPage();
    expectHealthyPage(first);
    // The proxy pooled its upstream connections: fewer of them than requests.
    expect((await viteConnections()).length).toBeLessThan(first.size);

    // The served client reads its HMR settings from these constants.
    const client = first.get('/@vite/client')!.body;
    const token = /^const wsToken = "([^"\n]+)";$/m.exec(client)?.[1];
    expect(token).toBeDefined();
    // No HMR port of its own: a browser dials the origin it loaded the page from, the proxy.
    expect(client).toMatch(/^const hmrPort = null;$/m);

    // Vite, not the proxy, guards the socket: with a browser's Origin, a wrong
    // token is refused by Vite and the refusal passes through as it was sent.
    await expect(connectHmr('not-the-token')).rejects.toThrow('HMR upgrade refused: 400 (no Proxy-Status)');

    const { ws, messages } = await connectHmr(token!);
    hmr = ws;
    expect(ws.protocol).toBe('vite-hmr');
    expect(await waitFor('"connected"', () => parsed(messages).find((m) => m.type === 'connected'), 5_000)).toEqual({ type: 'connected' });

    // The upgrade can take over the kept-alive connection the page was loaded
    // on (the proxy's pool hands pooled sockets to upgrades too), so load the
    // page again, as a reload would: a kept-alive connection must sit in the
    // pool while we idle, or the idle would prove nothing.
    expectHealthyPage(await loadPage());
    const pooledBeforeIdle = (await viteConnections()).filter((c) => !c.upgraded && !c.closed);
    expect(pooledBeforeIdle.length).toBeGreaterThan(0);

    // Idle past the moment Vite really closes idle sockets (6 s on Node 24:
    // it advertises 5 s and allows a 1 s buffer), not just the advertised 5 s.
    expect(idleCloseMs).toBeGreaterThanOrEqual(5_000);
    await sleep(idleCloseMs + 500);

    // Every pooled connection is gone, and it was the proxy that retired it
    // (a FIN before Vite's own timeout), not Vite closing it under the proxy.
    const afterIdle = await viteConnections();
    const pooled = afterIdle.filter((c) => !c.upgraded);
    expect(pooled.length).toBeGreaterThan(0);
    expect(pooled.map((c) => [c.closed, c.closedByPeer])).toEqual(pooled.map(() => [true, true]));

    const second = await loadPage();
    expectHealthyPage(second);
    expect([...second.keys()]).toEqual([...first.keys()]);
    // ...on fresh connections, since every pooled one was gone.
    expect((await viteConnections()).length).toBeGreaterThan(afterIdle.length);

    // The HMR socket outlived the idle period and still carries Vite's updates.
    expect(ws.readyState).toBe(WebSocket.OPEN);
    // A real edit on disk, seen by Vite's file watcher. dep.js accepts no HMR
    // and neither does main.js, so Vite has to reload the page.
    const before = messages.length;
    fs.writeFileSync(path.join(root, 'dep.js'), "export const message = 'edited';\n");
    const reload = await waitFor(
      'an HMR message after editing dep.js',
      () => parsed(messages.slice(before)).find((m) => m.type === 'full-reload' || m.type === 'update'),
      5_000,
    );
    expect(reload).toMatchObject({ type: 'full-reload', path: '*', triggeredBy: path.join(root, 'dep.js') });
    expect((await get('/dep.js')).body).toContain("export const message = 'edited';");

    // The proxy had nothing to report: not one warning or error.
    expect(records.filter((r) => r.level === 'warn' || r.level === 'error')).toEqual([]);
    // Nor did it need its stale-socket replay: retiring at 4 s was enough.
    expect(records.filter((r) => /stale pooled connection/.test(r.message))).toEqual([]);
  }, 30_000);
});
