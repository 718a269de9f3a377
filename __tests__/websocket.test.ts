import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { captureLogs } from './helpers/logs.ts';
import { startRawUpstream } from './helpers/raw-upstream.ts';
import { closedPort, listen, startRawServer, type Running } from './helpers/servers.ts';

interface Refused {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

// Frames the upstream sends with its 101 arrive in the same packet: ws emits
// them right after 'open', before a listener added afterwards could see them.
const inbox = new WeakMap<WebSocket, { queued: Array<{ data: Buffer; isBinary: boolean }>; waiting: Array<(m: { data: Buffer; isBinary: boolean }) => void> }>();

/** Opens a WebSocket through the proxy; resolves with the socket, or with the HTTP response that refused it. */
function connect(port: number, host: string, path = '/chat'): Promise<WebSocket | Refused> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host } });
    const box = { queued: [] as Array<{ data: Buffer; isBinary: boolean }>, waiting: [] as Array<(m: { data: Buffer; isBinary: boolean }) => void> };
    inbox.set(ws, box);
    ws.on('message', (data, isBinary) => {
      const message = { data: data as Buffer, isBinary };
      const waiter = box.waiting.shift();
      if (waiter) waiter(message);
      else box.queued.push(message);
    });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    ws.once('error', reject);
  });
}

function nextFrame(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  const box = inbox.get(ws)!;
  const queued = box.queued.shift();
  return queued ? Promise.resolve(queued) : new Promise((resolve) => box.waiting.push(resolve));
}

async function nextMessage(ws: WebSocket): Promise<string> {
  return String((await nextFrame(ws)).data);
}

function isRefused(value: WebSocket | Refused): value is Refused {
  return !(value instanceof WebSocket);
}

describe('WebSocket upgrades', () => {
  let upstream: Running;
  let wss: WebSocketServer;
  let refusing: Running;
  let hanging: Running;
  let refusedPort: number;
  const fronts: Array<{ running: Running; proxy: HonestProxy }> = [];
  const clients: WebSocket[] = [];
  const { logger, records } = captureLogs('info');

  beforeAll(async () => {
    // An echo server that also speaks first, and tells which path and headers it got.
    const server = http.createServer((_req, res) => res.end('plain http'));
    wss = new WebSocketServer({ server });
    wss.on('connection', (socket, req) => {
      socket.send(`hello ${req.url} ${req.headers['x-request-id'] ? 'with-id' : 'no-id'}`);
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
    upstream = await listen(server);

    // An upstream that refuses the upgrade the way an app does: 401 with a body.
    const refusingServer = http.createServer();
    refusingServer.on('upgrade', (_req, socket: Socket) => {
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 24\r\n\r\n{"error":"unauthorized"}');
    });
    refusing = await listen(refusingServer);
    hanging = await startRawServer((socket) => socket.resume());
    refusedPort = await closedPort();
  });

  afterAll(async () => {
    for (const client of clients) client.terminate();
    for (const { proxy, running } of fronts) {
      proxy.close();
      await running.close();
    }
    wss.close();
    await Promise.all([upstream, refusing, hanging].map((s) => s.close()));
  });

  beforeEach(() => {
    records.length = 0;
  });

  async function front(extra: Partial<ProxyOptions> = {}): Promise<number> {
    const proxy = createProxy({
      routes: {
        'ws.localhost': upstream.url,
        'refusing.localhost': refusing.url,
        'hang.localhost': hanging.url,
        'down.localhost': `http://127.0.0.1:${refusedPort}`,
      },
      logger,
      timeouts: { response: 300 },
      ...extra,
    });
    const server = http.createServer((req, res) => proxy(req, res));
    server.on('upgrade', (req, socket, head) => proxy.upgrade(req, socket, head));
    const running = await listen(server);
    fronts.push({ running, proxy });
    return (server.address() as AddressInfo).port;
  }

  it('carries frames both ways, text and binary, with the request id forwarded', async () => {
    const port = await front();
    const ws = await connect(port, 'ws.localhost');
    if (isRefused(ws)) throw new Error(`refused: ${ws.status}`);
    clients.push(ws);
    const greeting = await nextMessage(ws);
    expect(greeting).toBe('hello /chat with-id');
    ws.send('ping-1');
    expect(await nextMessage(ws)).toBe('ping-1');
    const binary = Buffer.from([0, 1, 2, 250, 255]);
    ws.send(binary);
    const echoed = await nextFrame(ws);
    expect(echoed.isBinary).toBe(true);
    expect(Buffer.compare(echoed.data, binary)).toBe(0);
    expect(records).toEqual([]);
  });

  it.each([
    ['an unknown host', 'nobody.localhost', 404, 'Not Found', 'destination_not_found'],
    ['a Host that is not a host name', 'bad host!', 400, 'Bad Request', 'http_request_error'],
    ['an upstream that refuses connections', 'down.localhost', 502, 'Bad Gateway', 'connection_refused'],
    ['an upstream that never answers', 'hang.localhost', 504, 'Gateway Timeout', 'http_response_timeout'],
  ])('answers %s with a real HTTP response on the socket', async (_case, host, status, text, proxyStatus) => {
    const port = await front();
    const refused = await connect(port, host);
    if (!isRefused(refused)) throw new Error('upgrade should have been refused');
    expect(refused.status).toBe(status);
    expect(refused.body).toBe(text);
    expect(refused.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(refused.headers['proxy-status']).toBe(`proxy; error=${proxyStatus}`);
    expect(refused.headers['connection']).toBe('close');
  });

  it('close() ends an open WebSocket with 1001 on both sides as soon as both peers answer, not at the grace', async () => {
    const proxy = createProxy({ routes: { 'ws.localhost': upstream.url }, logger });
    const server = http.createServer((req, res) => proxy(req, res));
    server.on('upgrade', (req, socket, head) => proxy.upgrade(req, socket, head));
    const running = await listen(server);
    const upstreamClosed = new Promise<number>((resolve) => wss.once('connection', (socket) => socket.once('close', (code) => resolve(code))));
    const ws = await connect(running.port, 'ws.localhost');
    if (isRefused(ws)) throw new Error(`refused: ${ws.status}`);
    await nextMessage(ws);
    const clientClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    try {
      const started = performance.now();
      await proxy.close({ timeout: 5_000 });
      // The grace for a peer that never answers is 1 s: two peers that answer at once are done long before.
      expect(performance.now() - started).toBeLessThan(500);
      expect(await clientClosed).toBe(1001);
      expect(await upstreamClosed).toBe(1001);
    } finally {
      ws.terminate();
      await running.close();
    }
  });

  it("passes an upstream's refusal through as it was sent", async () => {
    const port = await front();
    const refused = await connect(port, 'refusing.localhost');
    if (!isRefused(refused)) throw new Error('upgrade should have been refused');
    expect(refused.status).toBe(401);
    expect(refused.body).toBe('{"error":"unauthorized"}');
    expect(refused.headers['proxy-status']).toBeUndefined();
  });

  it('counts upgrades against the same rate limit as HTTP requests', async () => {
    const port = await front({ rateLimit: { limit: 2, windowMs: 60_000 } });
    const plain = await new Promise<number>((resolve) =>
      http.get({ port, host: '127.0.0.1', path: '/', headers: { host: 'ws.localhost' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      }),
    );
    expect(plain).toBe(200);
    const first = await connect(port, 'ws.localhost');
    expect(isRefused(first)).toBe(false);
    clients.push(first as WebSocket);
    const limited = await connect(port, 'ws.localhost');
    if (!isRefused(limited)) throw new Error('third request should have been limited');
    expect(limited.status).toBe(429);
    expect(limited.body).toBe('Too Many Requests');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.headers['ratelimit-policy']).toBe('2;w=60');
    expect(records.find((r) => r.code === 'RATE_LIMITED')?.message).toMatch(/^RATE_LIMIT /);
  });

  it('opens every upgrade on a fresh connection, never on a pooled one the upstream may have closed', async () => {
    // Resets the second request on any connection: an upgrade sent on the
    // socket pooled by the GET would fail as a 502.
    const raw = await startRawUpstream({ decide: (e) => (e.onConnection === 2 ? 'reset' : 'answer') });
    const proxy = createProxy({ routes: { 'raw.localhost': raw.url }, logger });
    const server = http.createServer((req, res) => proxy(req, res));
    server.on('upgrade', (req, socket, head) => proxy.upgrade(req, socket, head));
    const running = await listen(server);
    fronts.push({ running, proxy });
    try {
      const warm = await new Promise<number>((resolve) =>
        http.get({ port: running.port, host: '127.0.0.1', path: '/warm', headers: { host: 'raw.localhost' } }, (res) => {
          res.resume();
          res.once('end', () => resolve(res.statusCode!));
        }),
      );
      expect(warm).toBe(200);
      // The raw upstream is no WebSocket server: it answers the upgrade with a
      // plain 200, which passes through. What matters is where it was sent.
      const answer = await connect(running.port, 'raw.localhost', '/hmr');
      if (!isRefused(answer)) throw new Error('a plain HTTP upstream cannot upgrade');
      expect(answer.status).toBe(200);
      expect(raw.seen.map((e) => [e.path, e.connection, e.onConnection])).toEqual([
        ['/warm', 1, 1],
        ['/hmr', 2, 1],
      ]);
      expect(records).toEqual([]);
    } finally {
      await raw.close();
    }
  });

  it('closes the client when the upstream goes away after the upgrade: 1006, no close frame, at once', async () => {
    const port = await front();
    const ws = await connect(port, 'ws.localhost');
    if (isRefused(ws)) throw new Error(`refused: ${ws.status}`);
    await nextMessage(ws);
    const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: String(reason), at: performance.now() })),
    );
    const terminatedAt = performance.now();
    // A TCP close with no close frame: all the proxy can pass on is the close.
    for (const socket of wss.clients) socket.terminate();
    const seen = await closed;
    expect({ code: seen.code, reason: seen.reason }).toEqual({ code: 1006, reason: '' });
    expect(seen.at - terminatedAt).toBeLessThan(500);
  });

  it("relays each side's close frame, code and reason, to the other", async () => {
    const port = await front();
    const upstreamCloses: Array<{ code: number; reason: string }> = [];
    const upstreamSides = new Map<string, WebSocket>();
    const onConnection = (socket: WebSocket, req: http.IncomingMessage) => {
      upstreamSides.set(req.url!, socket);
      socket.once('close', (code, reason) => upstreamCloses.push({ code, reason: String(reason) }));
    };
    wss.on('connection', onConnection);
    try {
      // The upstream closes: the client sees its code and reason.
      const first = await connect(port, 'ws.localhost', '/upstream-closes');
      if (isRefused(first)) throw new Error(`refused: ${first.status}`);
      await nextMessage(first);
      const firstClosed = new Promise<{ code: number; reason: string }>((resolve) => first.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
      upstreamSides.get('/upstream-closes')!.close(4000, 'upstream says bye');
      expect(await firstClosed).toEqual({ code: 4000, reason: 'upstream says bye' });

      // The client closes: the upstream sees its code and reason.
      upstreamCloses.length = 0;
      const second = await connect(port, 'ws.localhost', '/client-closes');
      if (isRefused(second)) throw new Error(`refused: ${second.status}`);
      await nextMessage(second);
      second.close(4001, 'client says bye');
      const deadline = performance.now() + 1_000;
      while (!upstreamCloses.some((c) => c.code === 4001) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(upstreamCloses).toContainEqual({ code: 4001, reason: 'client says bye' });
    } finally {
      wss.off('connection', onConnection);
    }
  });
});

/** A WebSocket echo server on a port chosen in advance (an app that boots late); greets with its name. */
async function webSocketServerOn(port: number, name: string): Promise<{ close(): Promise<void>; upgrades: () => number }> {
  const server = http.createServer((_req, res) => res.end('plain http'));
  const wss = new WebSocketServer({ server });
  let upgrades = 0;
  wss.on('connection', (socket) => {
    upgrades++;
    socket.send(`hello from ${name}`);
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    upgrades: () => upgrades,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('WebSocket upgrades that must find a connectable upstream first', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function wsFront(options: ProxyOptions): Promise<number> {
    const proxy = createProxy(options);
    const server = http.createServer((req, res) => proxy(req, res));
    server.on('upgrade', (req, socket, head) => proxy.upgrade(req, socket, head));
    const running = await listen(server);
    cleanups.push(async () => {
      await proxy.close({ timeout: 100 });
      await running.close();
    });
    return running.port;
  }

  it('with startupGrace, holds the handshake until an upstream that boots 600 ms late listens, then carries frames', async () => {
    const { logger, records } = captureLogs('info');
    const port = await closedPort();
    const proxyPort = await wsFront({ routes: { 'late.localhost': `http://127.0.0.1:${port}` }, startupGrace: 3_000, logger });
    const started = performance.now();
    const opening = connect(proxyPort, 'late.localhost', '/hmr');
    await new Promise((resolve) => setTimeout(resolve, 600));
    const late = await webSocketServerOn(port, 'late');
    cleanups.push(() => late.close());
    const ws = await opening;
    if (isRefused(ws)) throw new Error(`refused: ${ws.status} ${ws.headers['proxy-status']}`);
    cleanups.push(() => ws.terminate());
    expect(performance.now() - started).toBeGreaterThanOrEqual(550);
    expect(await nextMessage(ws)).toBe('hello from late');
    ws.send('ping');
    expect(await nextMessage(ws)).toBe('ping');
    // The handshake was sent once, to the upstream that was up.
    expect(late.upgrades()).toBe(1);
    expect(records.filter((r) => r.level === 'warn' || r.level === 'error')).toEqual([]);
  });

  it('with startupGrace and an upstream that never comes: an HTTP 502 with Retry-After on the socket', async () => {
    const port = await closedPort();
    const proxyPort = await wsFront({ routes: { 'never.localhost': `http://127.0.0.1:${port}` }, startupGrace: 500, logger: captureLogs('info').logger });
    const started = performance.now();
    const refused = await connect(proxyPort, 'never.localhost', '/hmr');
    if (!isRefused(refused)) throw new Error('nothing listens: the upgrade cannot succeed');
    expect(performance.now() - started).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBe(502);
    expect(refused.headers['proxy-status']).toBe('proxy; error=connection_refused');
    expect(refused.headers['retry-after']).toBe('1');
  });

  it('with two upstreams where the first refuses: the upgrade goes to the second, and the first is skipped after', async () => {
    const { logger, records } = captureLogs('info');
    const down = await closedPort();
    const livePort = await closedPort();
    const live = await webSocketServerOn(livePort, 'B');
    cleanups.push(() => live.close());
    const proxyPort = await wsFront({ routes: { 'lb.localhost': [`http://127.0.0.1:${down}`, `http://127.0.0.1:${livePort}`] }, logger });
    const opened: string[] = [];
    for (let i = 0; i < 3; i++) {
      const ws = await connect(proxyPort, 'lb.localhost', `/ws-${i}`);
      if (isRefused(ws)) throw new Error(`refused: ${ws.status} ${ws.headers['proxy-status']}`);
      cleanups.push(() => ws.terminate());
      opened.push(await nextMessage(ws));
    }
    expect(opened).toEqual(['hello from B', 'hello from B', 'hello from B']);
    expect(live.upgrades()).toBe(3);
    // Taken out once, on the first upgrade's probe.
    expect(records.filter((r) => r.message.startsWith('upstream taken out of rotation')).map((r) => r.upstream)).toEqual([`http://127.0.0.1:${down}`]);
  });
});
