import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import express from 'express';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import type { ShutdownChildMessage } from './fixtures/shutdown/proxy-child.ts';
import { captureLogs } from './helpers/logs.ts';
import { openRaw } from './helpers/raw-client.ts';
import { listen, type Running } from './helpers/servers.ts';

const HOST = 'app.localhost';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  endedAt: number;
}

/** One request on a connection of its own; rejects if the connection is cut before the response ends. */
function request(port: number, requestPath: string, options: { method?: string; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: requestPath, method: options.method ?? 'GET', agent: false, headers: { host: HOST } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, endedAt: performance.now() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Rejects with `label` when `promise` has not settled within `ms`: nothing in this file may hang. */
function within<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${label}: not within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('shutdown of a proxy in its own process (SIGTERM)', () => {
  let upstream: Running;
  let wss: WebSocketServer;
  let child: ChildProcess | undefined;
  const upstreamSocketCloses: Array<{ code: number }> = [];
  let uploadBytesAtUpstream = 0;
  let uploadChunkSeen: () => void;
  const uploadStarted = new Promise<void>((resolve) => (uploadChunkSeen = resolve));
  let upstreamWsConnected: () => void;
  const upstreamWsOpen = new Promise<void>((resolve) => (upstreamWsConnected = resolve));

  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        let n = 0;
        const timer = setInterval(() => res.write(`data: tick ${n++}\n\n`), 200);
        res.write(`data: hello\n\n`);
        res.once('close', () => clearInterval(timer));
        return;
      }
      if (req.url === '/upload') {
        req.on('data', (chunk: Buffer) => {
          uploadBytesAtUpstream += chunk.length;
          uploadChunkSeen();
        });
        req.on('end', () => res.end(`got ${uploadBytesAtUpstream}`));
        req.on('error', () => {});
        return;
      }
      res.end('ok');
    });
    wss = new WebSocketServer({ server });
    wss.on('connection', (socket) => {
      upstreamWsConnected();
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
      socket.on('close', (code) => upstreamSocketCloses.push({ code }));
    });
    upstream = await listen(server);
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    wss.close();
    await upstream.close();
  });

  it('closes a WebSocket with 1001 on both sides, cuts SSE and a slow upload at the deadline, and exits with 0 by itself', async () => {
    child = fork(path.join(import.meta.dirname, 'fixtures/shutdown/proxy-child.ts'), [upstream.url], {
      execArgv: [],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => (stderr += chunk));
    const messages: ShutdownChildMessage[] = [];
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
      child!.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })),
    );
    const port = await within(
      new Promise<number>((resolve, reject) => {
        child!.once('exit', (code) => reject(new Error(`proxy child exited with ${code} before it listened: ${stderr}`)));
        child!.on('message', (message: ShutdownChildMessage) => {
          messages.push(message);
          if (message.type === 'ready') resolve(message.port);
        });
      }),
      10_000,
      'child ready',
    );

    // 1. A proxied WebSocket, through the app (upgradeThrough).
    const ws = new WebSocket(`ws://127.0.0.1:${port}/preview/ws`, { headers: { host: HOST } });
    const wsClosed = new Promise<{ code: number; at: number }>((resolve) => ws.once('close', (code) => resolve({ code, at: performance.now() })));
    ws.on('error', () => {});
    await within(new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject))), 2_000, 'websocket open');
    await within(upstreamWsOpen, 2_000, 'upstream websocket');
    const echo = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
    ws.send('ping');
    expect(await within(echo, 2_000, 'echo')).toBe('ping');

    // 2. An SSE stream that never ends.
    let sseData = '';
    const sseEnded = new Promise<{ at: number; complete: boolean }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/preview/sse', agent: false, headers: { host: HOST } }, (res) => {
        expect(res.statusCode).toBe(200);
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (sseData += chunk));
        res.on('error', () => {});
        res.once('close', () => resolve({ at: performance.now(), complete: res.complete }));
      });
      req.on('error', reject);
    });

    // 3. A slow chunked upload the upstream is reading.
    let uploadTimer: NodeJS.Timeout | undefined;
    const uploadSettled = new Promise<{ kind: 'answered'; status: number } | { kind: 'cut'; error: string; at: number }>((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: '/preview/upload', method: 'POST', agent: false, headers: { host: HOST, 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          res.on('error', () => {});
          res.once('close', () => resolve({ kind: 'answered', status: res.statusCode! }));
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ kind: 'cut', error: err.code ?? err.message, at: performance.now() }));
      req.on('close', () => clearInterval(uploadTimer));
      req.write('x'.repeat(64));
      uploadTimer = setInterval(() => {
        if (!req.destroyed) req.write('x'.repeat(64));
      }, 100);
    });

    await within(uploadStarted, 2_000, 'upload reaching the upstream');
    await within(
      (async () => {
        while (!sseData.includes('tick 0')) await sleep(20);
      })(),
      2_000,
      'SSE events',
    );

    const sigtermAt = performance.now();
    child.kill('SIGTERM');

    try {
      const exit = await within(exited, 4_000, 'child exit after SIGTERM');
      expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
      expect(exit.at - sigtermAt).toBeLessThan(3_000);

      const closed = await within(wsClosed, 1_000, 'websocket client close');
      expect(closed.code).toBe(1001);
      await within(
        (async () => {
          while (upstreamSocketCloses.length === 0) await sleep(10);
        })(),
        1_000,
        'upstream websocket close',
      );
      expect(upstreamSocketCloses).toEqual([{ code: 1001 }]);

      const sse = await within(sseEnded, 1_000, 'SSE response end');
      // An endless stream cannot have been complete: it was cut.
      expect(sse.complete).toBe(false);
      expect(sse.at - sigtermAt).toBeLessThan(3_000);

      // The upload never ends, so the upstream (which answers at its end) never
      // answers and no response head exists: the deadline (1.5 s) can only cut it.
      const upload = await within(uploadSettled, 1_000, 'upload outcome');
      expect(upload.kind).toBe('cut');
      expect(upload.kind === 'cut' && upload.at - sigtermAt).toBeGreaterThanOrEqual(1_400);

      // The deadline was reached (SSE never ends): one warning saying so.
      const warns = stderr
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { level: string; message: string; requests?: number; webSockets?: number })
        .filter((record) => record.message === 'shutdown deadline reached; aborting what is still in flight');
      expect(warns).toHaveLength(1);
      expect(messages.find((m) => m.type === 'closed')).toBeDefined();
    } finally {
      clearInterval(uploadTimer);
      ws.terminate();
    }
  }, 20_000);
});

describe('close() in process', () => {
  let upstream: Running;
  const open = new Set<Socket>();
  let onRequest: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  const { logger, records } = captureLogs('debug');
  const fronts: Array<{ running: Running; proxy: HonestProxy }> = [];
  const pending: http.ServerResponse[] = [];

  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      if (req.url === '/slow') {
        setTimeout(() => res.end('slow body, all of it'), 300);
        onRequest?.(req, res);
        return;
      }
      if (req.url === '/never') {
        pending.push(res);
        onRequest?.(req, res);
        return;
      }
      res.end(`ok ${req.url}`);
    });
    server.on('connection', (socket: Socket) => {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
    });
    upstream = await listen(server);
  });

  afterAll(async () => {
    for (const { proxy, running } of fronts) {
      void proxy.close({ timeout: 100 });
      await running.close();
    }
    for (const res of pending) res.destroy();
    await upstream.close();
  });

  beforeEach(() => {
    records.length = 0;
    onRequest = undefined;
  });

  async function front(extra: Partial<ProxyOptions> = {}): Promise<{ port: number; proxy: HonestProxy }> {
    const proxy = createProxy({ routes: { [HOST]: upstream.url }, logger, ...extra });
    const app = express();
    app.use('/preview', proxy);
    const running = await listen(http.createServer(app));
    fronts.push({ running, proxy });
    return { port: running.port, proxy };
  }

  it('refuses new requests with 503 while an in-flight one finishes, and resolves once it has', async () => {
    const { port, proxy } = await front({ timeouts: { response: 10_000 } });
    let arrivals = 0;
    const arrived = new Promise<void>((resolve) => (onRequest = () => ++arrivals === 2 && resolve()));
    const inFlight = request(port, '/preview/slow');
    // A second one on a connection that asks to be kept alive (Node's client above asks for close).
    const kept = await openRaw(port);
    await kept.write(`GET /preview/slow HTTP/1.1\r\nHost: ${HOST}\r\nConnection: keep-alive\r\n\r\n`);
    await within(arrived, 2_000, 'slow requests at the upstream');

    const closeStarted = performance.now();
    let closedAt: number | undefined;
    const closing = proxy.close({ timeout: 2_000 }).then(() => (closedAt = performance.now()));

    const refused = await within(request(port, '/preview/other'), 1_000, 'request during close');
    expect(refused.status).toBe(503);
    expect(refused.headers.connection).toBe('close');
    expect(refused.headers['retry-after']).toBeDefined();
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.headers['proxy-status']).toBe('proxy; error=proxy_internal_response');

    const finished = await within(inFlight, 2_000, 'in-flight request');
    expect(finished.status).toBe(200);
    expect(finished.body).toBe('slow body, all of it');
    // A response not begun when the drain started is its connection's last.
    expect(await kept.waitForResponses(1, 2_000)).toBe(true);
    const [keptAnswer] = kept.responses();
    expect([keptAnswer!.status, keptAnswer!.headers.connection, String(keptAnswer!.body)]).toEqual([200, 'close', 'slow body, all of it']);
    expect(await kept.waitForClose(500)).toBe(true);
    kept.destroy();

    await within(closing, 2_500, 'close()');
    expect(closedAt).toBeDefined();
    expect(closedAt!).toBeGreaterThanOrEqual(finished.endedAt - 5);
    // Well before the 2 s deadline: it waited for the one response, not the clock.
    expect(closedAt! - closeStarted).toBeLessThan(1_000);
    expect(records.filter((r) => r.message.startsWith('shutdown deadline'))).toHaveLength(0);
  });

  it('aborts a request still in flight at the deadline, with one warning that counts it', async () => {
    const { port, proxy } = await front({ timeouts: { response: 30_000 } });
    const arrived = new Promise<void>((resolve) => (onRequest = () => resolve()));
    const outcome = request(port, '/preview/never').then(
      (answer) => ({ kind: 'answered' as const, status: answer.status, at: performance.now() }),
      (err: NodeJS.ErrnoException) => ({ kind: 'cut' as const, error: err.code ?? err.message, at: performance.now() }),
    );
    await within(arrived, 2_000, 'request at the upstream');

    const closeStarted = performance.now();
    await within(proxy.close({ timeout: 400 }), 2_000, 'close()');
    const closeMs = performance.now() - closeStarted;
    expect(closeMs).toBeGreaterThanOrEqual(380);
    expect(closeMs).toBeLessThan(1_000);

    const result = await within(outcome, 1_000, 'client outcome');
    expect(result.kind).toBe('cut');
    expect(result.at - closeStarted).toBeGreaterThanOrEqual(380);

    const warns = records.filter((r) => r.level === 'warn' && r.message === 'shutdown deadline reached; aborting what is still in flight');
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ requests: 1, webSockets: 0 });
    expect(records.filter((r) => r.level === 'warn')).toHaveLength(1);
  });

  it('leaves no socket of its own upstream pool open once close() resolves', async () => {
    for (const socket of open) socket.destroy();
    await sleep(20);
    const { port, proxy } = await front();
    // Concurrent requests, so the pool holds several kept-alive sockets.
    const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => request(port, `/preview/pooled-${i}`)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    expect(open.size).toBeGreaterThan(0);

    await within(proxy.close(), 2_000, 'close()');
    // The upstream sees the FIN a moment later: give it a few ticks, no more.
    const deadline = performance.now() + 300;
    while (open.size > 0 && performance.now() < deadline) await sleep(10);
    expect(open.size).toBe(0);
  });
});
