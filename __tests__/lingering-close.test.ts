import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { createProxy, ProxyOptionsError, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { closedPort, listen, startUpstream, type Running, type Upstream } from './helpers/servers.ts';

// An early answer (413, 404, 429, an upstream's 401) while the client is still
// uploading: the proxy closes the connection, but lingering, as nginx does, so
// that the client reads the status instead of EPIPE or ECONNRESET.

const UPLOADER = path.join(import.meta.dirname, 'fixtures/uploader/upload.ts');
const MB = 1_000_000;
const TRIES = 10;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Uploads `size` bytes TRIES times from a process of its own (in one process
 * the client and the proxy share an event loop, which hides the race) and
 * returns what each try saw: a status, or the error code it got instead.
 */
async function uploadFromChild(url: string, client: 'fetch' | 'http', size: number): Promise<string[]> {
  const { stdout } = await promisify(execFile)(process.execPath, [UPLOADER, url, client, String(size), String(TRIES)], { timeout: 60_000 });
  return stdout
    .trim()
    .split('\n')
    .map((line) => {
      const outcome = JSON.parse(line) as { status?: number; error?: string };
      return outcome.status === undefined ? `error ${outcome.error}` : String(outcome.status);
    });
}

describe.each(EXPRESS_VERSIONS)('lingering close (%s)', (_name, express) => {
  let upstream: Upstream;
  let earlyAnswer: Upstream;
  let limited: ProxyApp;
  let unrouted: ProxyApp;
  let rateLimited: ProxyApp;
  let answersEarly: ProxyApp;

  beforeAll(async () => {
    upstream = await startUpstream((_req, res) => res.end('read'));
    // Answers before it reads a byte of the body, as an app's auth check does.
    earlyAnswer = await startUpstream((_req, res) => {
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end('no');
    });
    // The uploader's URL is http://127.0.0.1:<port>: its Host routes as `127.0.0.1`.
    limited = await startProxyApp(express, { routes: { '127.0.0.1': upstream.url }, bodyLimit: '1mb' });
    unrouted = await startProxyApp(express, { routes: { 'elsewhere.localhost': upstream.url } });
    rateLimited = await startProxyApp(express, { routes: { '127.0.0.1': upstream.url }, rateLimit: { windowMs: 60_000, limit: 1 } });
    answersEarly = await startProxyApp(express, { routes: { '127.0.0.1': earlyAnswer.url }, bodyLimit: false });
  });

  afterAll(async () => {
    await Promise.all([limited.close(), unrouted.close(), rateLimited.close(), answersEarly.close()]);
    await Promise.all([upstream.close(), earlyAnswer.close()]);
  });

  it.each([
    ['fetch', 20 * MB],
    ['fetch', 200 * MB],
    ['http', 20 * MB],
    ['http', 200 * MB],
  ] as const)('413 over a 1 MB limit: %s uploading %d bytes sees the 413 on every try', async (client, size) => {
    expect(await uploadFromChild(`${limited.url}${PREFIX}/upload`, client, size)).toEqual(Array(TRIES).fill('413'));
    expect(upstream.seen).toEqual([]);
  });

  it.each(['fetch', 'http'] as const)('404 for a host with no route: %s uploading 20 MB sees the 404 on every try', async (client) => {
    expect(await uploadFromChild(`${unrouted.url}${PREFIX}/upload`, client, 20 * MB)).toEqual(Array(TRIES).fill('404'));
  });

  it.each(['fetch', 'http'] as const)('429 once rate limited: %s uploading 20 MB sees the 429 on every try', async (client) => {
    // The one request the window allows, spent here (a bodyless GET; a second run of this test finds it spent already).
    await fetch(`${rateLimited.url}${PREFIX}/spend`);
    expect(await uploadFromChild(`${rateLimited.url}${PREFIX}/upload`, client, 20 * MB)).toEqual(Array(TRIES).fill('429'));
  });

  it.each(['fetch', 'http'] as const)("an upstream that answers before reading the body: %s uploading 20 MB sees the upstream's 401 on every try", async (client) => {
    expect(await uploadFromChild(`${answersEarly.url}${PREFIX}/upload`, client, 20 * MB)).toEqual(Array(TRIES).fill('401'));
  });
});

/** A raw client that sends a head declaring `declared` body bytes and then controls every write. */
async function connectAndDeclare(port: number, declared: number): Promise<{ socket: net.Socket; events: string[]; received: () => string }> {
  // Half-open allowed: the proxy's FIN must not end our side, as it would not a client still uploading.
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const events: string[] = [];
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('end', () => events.push('end'));
  socket.on('error', (err: NodeJS.ErrnoException) => events.push(`error ${err.code}`));
  socket.on('close', () => events.push('close'));
  socket.write(`POST ${PREFIX}/upload HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: ${declared}\r\n\r\n`);
  return { socket, events, received: () => Buffer.concat(chunks).toString('latin1') };
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) return false;
    await sleep(10);
  }
  return true;
}

const write = (socket: net.Socket, bytes: Buffer) => new Promise<Error | null | undefined>((resolve) => socket.write(bytes, resolve));

/**
 * Whether the proxy has let go of the connection. After its FIN, a half-open
 * client learns that the proxy closed only by writing: the closed socket
 * answers with a reset. Writes a little every 10 ms until an error comes back.
 */
async function proxyHasClosed(client: { socket: net.Socket; events: string[] }, timeoutMs: number): Promise<boolean> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (client.events.some((event) => event.startsWith('error'))) return true;
    if (!client.socket.destroyed) client.socket.write(Buffer.alloc(1024));
    await sleep(10);
  }
  return false;
}

describe('lingering close on the wire', () => {
  let upstream: Upstream;
  let running: Running[] = [];
  let proxies: HonestProxy[] = [];

  beforeAll(async () => {
    upstream = await startUpstream((_req, res) => res.end('read'));
  });

  afterEach(async () => {
    await Promise.all(proxies.map((proxy) => proxy.close({ timeout: 100 })));
    await Promise.all(running.map((server) => server.close()));
    running = [];
    proxies = [];
  });

  afterAll(async () => {
    await upstream.close();
  });

  async function start(options: Partial<ProxyOptions> = {}): Promise<{ port: number; proxy: HonestProxy }> {
    const proxy = createProxy({ routes: { 'app.localhost': upstream.url }, bodyLimit: 1000, ...options });
    const server = http.createServer((req, res) => proxy(req, res));
    const listening = await listen(server);
    running.push(listening);
    proxies.push(proxy);
    return { port: listening.port, proxy };
  }

  it('after the 413 the proxy half-closes and goes on reading: the client can still write, and the connection ends when it does', async () => {
    const { port } = await start();
    const client = await connectAndDeclare(port, 5 * MB);
    expect(await until(() => client.events.includes('end'), 2000)).toBe(true);
    expect(client.received()).toMatch(/^HTTP\/1\.1 413 Payload Too Large\r\n/);
    expect(client.received().toLowerCase()).toContain('\r\nconnection: close\r\n');
    // The proxy's FIN came; the body is still wanted by no one, yet writing it is no error.
    for (let i = 0; i < 16; i++) expect(await write(client.socket, Buffer.alloc(64 * 1024))).toBeFalsy();
    await sleep(50);
    expect(client.events).toEqual(['end']);
    client.socket.end();
    expect(await until(() => client.events.includes('close'), 1000)).toBe(true);
    expect(client.events).toEqual(['end', 'close']);
  });

  it('a client that goes quiet is cut after lingeringClose.timeout', async () => {
    const { port } = await start({ lingeringClose: { timeout: 300 } });
    const client = await connectAndDeclare(port, 5 * MB);
    expect(await until(() => client.events.includes('end'), 2000)).toBe(true);
    const endedAt = Date.now();
    // Still lingering well inside the timeout: a write is read, not refused.
    await sleep(100);
    expect(await write(client.socket, Buffer.alloc(1024))).toBeFalsy();
    await sleep(50);
    expect(client.events).toEqual(['end']);
    // Then quiet past it: the proxy has closed.
    await sleep(500);
    expect(await proxyHasClosed(client, 1000)).toBe(true);
    expect(Date.now() - endedAt).toBeGreaterThanOrEqual(300);
  });

  it('a client that keeps trickling is cut after lingeringClose.time', async () => {
    const { port } = await start({ lingeringClose: { time: 400, timeout: 5000 } });
    const client = await connectAndDeclare(port, 5 * MB);
    const started = Date.now();
    const trickle = setInterval(() => client.socket.write(Buffer.alloc(100)), 50);
    try {
      expect(await until(() => client.events.includes('close'), 3000)).toBe(true);
    } finally {
      clearInterval(trickle);
    }
    const lasted = Date.now() - started;
    expect(lasted).toBeGreaterThanOrEqual(350);
    expect(lasted).toBeLessThan(2500);
    expect(client.received()).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('a client that sends more than lingeringClose.bytes is cut', async () => {
    const { port } = await start({ lingeringClose: { bytes: '64kb' } });
    const client = await connectAndDeclare(port, 5 * MB);
    expect(await until(() => client.events.includes('end'), 2000)).toBe(true);
    expect(await proxyHasClosed(client, 2000)).toBe(true);
  });

  it('proxy.close() ends a lingering connection by its deadline and resolves', async () => {
    const { port, proxy } = await start();
    const client = await connectAndDeclare(port, 5 * MB);
    expect(await until(() => client.events.includes('end'), 2000)).toBe(true);
    const started = Date.now();
    let closed = false;
    const closing = proxy.close({ timeout: 300 }).then(() => (closed = true));
    // A lingering close counts as in flight: close() waits for it until its deadline...
    await sleep(100);
    expect(closed).toBe(false);
    await closing;
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    // ...and then ends it.
    expect(await proxyHasClosed(client, 1000)).toBe(true);
  });

  it('a small declared body is still drained and the connection kept for the next request', async () => {
    const { port } = await start({ routes: { 'app.localhost': `http://127.0.0.1:${await closedPort()}` }, bodyLimit: false });
    const client = await connectAndDeclare(port, 10);
    client.socket.write('0123456789');
    client.socket.write(`GET ${PREFIX}/next HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n`);
    expect(await until(() => (client.received().match(/HTTP\/1\.1 /g) ?? []).length === 2, 2000)).toBe(true);
    expect(client.received()).toMatch(/^HTTP\/1\.1 502 [^]*HTTP\/1\.1 404 /);
    expect(client.events).toEqual([]);
    client.socket.destroy();
  });
});

describe('lingeringClose option', () => {
  it.each([
    ['a number', 5],
    ['time of 0', { time: 0 }],
    ['a negative timeout', { timeout: -1 }],
    ['bytes of false', { bytes: false }],
    ['bytes in an unknown unit', { bytes: '10 MiB' }],
    ['an unknown key', { tiemout: 100 }],
  ])('refuses %s with a ProxyOptionsError naming it', (_case, value) => {
    let thrown: unknown;
    try {
      createProxy({ routes: { 'a.localhost': 'http://127.0.0.1:1' }, lingeringClose: value as never });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect((thrown as Error).message).toMatch(/lingeringClose/);
  });

  it('names the closest key for a typo', () => {
    expect(() => createProxy({ routes: { 'a.localhost': 'http://127.0.0.1:1' }, lingeringClose: { tiemout: 100 } as never })).toThrow(
      'did you mean "lingeringClose.timeout"?',
    );
  });
});
