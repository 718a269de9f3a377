import http from 'node:http';
import { createProxy } from '../src/index.ts';
import { captureLogs } from './helpers/logs.ts';
import { collectWarnings, listenerLeaks, realProcess } from './helpers/real-process.ts';
import { listen, type Running } from './helpers/servers.ts';

const HOST = 'app.localhost';

/** What the upstream saw of each request: when it closed, and whether the response was finished. */
interface Observed {
  requestClosed: Promise<void>;
  responseClosed: Promise<boolean>;
}

async function startObservedUpstream(behave: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const observed: Observed[] = [];
  let open = 0;
  let connections = 0;
  const server = http.createServer((req, res) => {
    observed.push({
      requestClosed: new Promise((resolve) => req.once('close', () => resolve())),
      responseClosed: new Promise((resolve) => res.once('close', () => resolve(res.writableFinished))),
    });
    behave(req, res);
  });
  server.on('connection', (socket) => {
    open++;
    connections++;
    socket.once('close', () => open--);
  });
  const running = await listen(server);
  return Object.assign(running, { observed, openConnections: () => open, connections: () => connections });
}

/** Sends a GET and destroys the client socket at `abortAfterMs`, or once the first body byte arrives. */
function abortingGet(port: number, abort: { afterMs?: number; onFirstByte?: boolean }): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get({ port, host: '127.0.0.1', path: '/', headers: { host: HOST }, agent: false }, (res) => {
      res.once('data', () => {
        if (abort.onFirstByte) req.destroy();
      });
    });
    req.on('error', () => {});
    req.on('close', () => resolve());
    if (abort.afterMs !== undefined) setTimeout(() => req.destroy(), abort.afterMs);
  });
}

describe('a client that goes away', () => {
  let upstream: Awaited<ReturnType<typeof startObservedUpstream>>;
  let front: Running;
  const { logger, records } = captureLogs('info');
  const proxy = { current: undefined as ReturnType<typeof createProxy> | undefined };
  // On the real process: the test file's own `process` never hears a warning.
  let collected: ReturnType<typeof collectWarnings>;

  beforeAll(async () => {
    collected = collectWarnings();
    upstream = await startObservedUpstream((req, res) => {
      if (req.url === '/slow-route') return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      // Streams for up to 5 s unless the proxy hangs up first.
      let sent = 0;
      const timer = setInterval(() => {
        res.write(`chunk ${sent++}\n`);
        if (sent === 250) {
          clearInterval(timer);
          res.end();
        }
      }, 20);
      res.once('close', () => clearInterval(timer));
    });
    proxy.current = createProxy({ routes: { [HOST]: upstream.url }, logger });
    front = await listen(http.createServer((req, res) => proxy.current!(req, res)));
  });

  afterAll(async () => {
    collected.stop();
    proxy.current!.close();
    await front.close();
    await upstream.close();
  });

  beforeEach(() => {
    records.length = 0;
    upstream.observed.length = 0;
  });

  it('aborts the upstream exchange at once when the client leaves mid-response, logging nothing above debug', async () => {
    const started = Date.now();
    await abortingGet(front.port, { onFirstByte: true });
    expect(upstream.observed).toHaveLength(1);
    const finished = await upstream.observed[0]!.responseClosed;
    expect(finished).toBe(false);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(records).toEqual([]);
  });

  it('aborts the upstream request when the client leaves before the response', async () => {
    const slow = await startObservedUpstream(() => {}); // never answers
    const slowProxy = createProxy({ routes: { [HOST]: slow.url }, logger });
    const slowFront = await listen(http.createServer((req, res) => slowProxy(req, res)));
    try {
      await abortingGet(slowFront.port, { afterMs: 100 });
      expect(slow.observed).toHaveLength(1);
      await slow.observed[0]!.requestClosed;
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(slow.openConnections()).toBe(0);
      expect(records).toEqual([]);
    } finally {
      slowProxy.close();
      await slowFront.close();
      await slow.close();
    }
  });

  it('never contacts the upstream for a client that left while its route was being resolved', async () => {
    const counted = await startObservedUpstream((_req, res) => res.end('late'));
    const slowRouteProxy = createProxy({
      routes: async () => {
        await new Promise((resolve) => setTimeout(resolve, 150));
        return counted.url;
      },
      logger,
    });
    const slowFront = await listen(http.createServer((req, res) => slowRouteProxy(req, res)));
    try {
      await abortingGet(slowFront.port, { afterMs: 30 });
      await new Promise((resolve) => setTimeout(resolve, 250));
      // Not even a connection: one opened for a gone client would sit there
      // with a request that is never sent, and no clock running.
      expect(counted.connections()).toBe(0);
      expect(counted.observed).toHaveLength(0);
      expect(records).toEqual([]);
    } finally {
      slowRouteProxy.close();
      await slowFront.close();
      await counted.close();
    }
  });

  it('leaks no upstream socket and no listener over many aborted requests', async () => {
    for (let i = 0; i < 40; i++) await abortingGet(front.port, { onFirstByte: true });
    await Promise.all(upstream.observed.map((o) => o.responseClosed));
    await new Promise((resolve) => setTimeout(resolve, 50));
    // A response aborted mid-body cannot go back to the pool: every one of those sockets is gone.
    expect(upstream.openConnections()).toBe(0);
    expect(realProcess.pid).toBe(process.pid);
    expect(realProcess.listenerCount('warning')).toBeGreaterThan(0);
    expect(listenerLeaks(collected.warnings)).toEqual([]);
    expect(records).toEqual([]);
  });
});
