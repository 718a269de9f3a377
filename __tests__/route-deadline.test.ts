import http from 'node:http';
import { createProxy, DEFAULT_TIMEOUTS, portHostRoutes, ProxyOptionsError, type RouteFunction } from '../src/index.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { collectWarnings, listenerLeaks } from './helpers/real-process.ts';
import { abandonedGet, gate, get, isAnswer, openWebSocket, sleep, startFront, startNamedUpstream, waitFor, type Front } from './helpers/route-lookup.ts';
import { listen } from './helpers/servers.ts';

const ROUTE_TIMEOUT = 300;

describe.each(EXPRESS_VERSIONS)('a deadline on route lookups (%s)', (_name, express) => {
  let upstream: Awaited<ReturnType<typeof startNamedUpstream>>;
  const fronts: Front[] = [];
  const { logger, records } = captureLogs('debug');

  beforeAll(async () => {
    upstream = await startNamedUpstream('app');
  });
  beforeEach(() => {
    records.length = 0;
  });
  afterAll(async () => {
    await Promise.all(fronts.map(async (front) => (await front.proxy.close({ timeout: 100 }), await front.close())));
    await upstream.close();
  });

  async function start(routes: RouteFunction): Promise<Front> {
    const front = await startFront(express, { routes, logger, timeouts: { route: ROUTE_TIMEOUT } });
    fronts.push(front);
    return front;
  }

  const timeoutRecords = () => records.filter((record) => record.code === 'ROUTE_LOOKUP_TIMEOUT');

  it('answers 504 at the deadline when a route function never settles, logs it at warn, and aborts its signal', async () => {
    const signals: AbortSignal[] = [];
    const front = await start((_req, { signal }) => {
      signals.push(signal);
      return new Promise<never>(() => {});
    });
    const startedAt = performance.now();
    const res = await get(front.port, 'app.test');
    const took = performance.now() - startedAt;
    expect(res.status).toBe(504);
    expect(res.body).toBe('Gateway Timeout');
    expect(res.headers['proxy-status']).toBe('proxy; error=proxy_internal_error');
    expect(took).toBeGreaterThanOrEqual(ROUTE_TIMEOUT - 5);
    expect(took).toBeLessThan(ROUTE_TIMEOUT + 1500);
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(true);
    expect((signals[0]!.reason as DOMException).name).toBe('TimeoutError');
    const [record, ...more] = timeoutRecords();
    expect(more).toEqual([]);
    expect(record).toMatchObject({ level: 'warn', status: 504, host: 'app.test', proxyStatus: 'proxy_internal_error', timeoutMs: ROUTE_TIMEOUT });
    expect(record!.waitedMs).toBeGreaterThanOrEqual(ROUTE_TIMEOUT - 5);
    expect(upstream.requests).toBe(0);
  });

  it('answers 504, not 500, when the resolver rejects as its signal aborts', async () => {
    const front = await start(
      (_req, { signal }) => new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('query cancelled')))),
    );
    const res = await get(front.port, 'app.test');
    expect(res.status).toBe(504);
    expect(timeoutRecords()).toHaveLength(1);
    expect(records.filter((record) => record.level === 'error')).toEqual([]);
  });

  it("hands portHostRoutes' resolve the signal, and times it out the same way", async () => {
    const seen: Array<{ id: string; port: number; signal: AbortSignal }> = [];
    const front = await start(
      portHostRoutes({
        domain: 'localhost',
        resolve: (id, port, _req, { signal }) => {
          seen.push({ id, port, signal });
          return id === 'hang' ? new Promise<never>(() => {}) : upstream.url;
        },
      }),
    );
    expect((await get(front.port, `${upstream.port}-ok.localhost`)).body).toBe('app /');
    const res = await get(front.port, '3000-hang.localhost');
    expect(res.status).toBe(504);
    expect(seen.map(({ id, port }) => [id, port])).toEqual([
      ['ok', upstream.port],
      ['hang', 3000],
    ]);
    // The lookup that answered in time left no deadline behind.
    expect(seen[0]!.signal.aborted).toBe(false);
    expect((seen[1]!.signal.reason as DOMException).name).toBe('TimeoutError');
    expect(timeoutRecords()[0]).toMatchObject({ host: '3000-hang.localhost' });
  });

  it('leaves the signal of a lookup that settled in time alone after the deadline', async () => {
    const signals: AbortSignal[] = [];
    const front = await start(async (_req, { signal }) => {
      signals.push(signal);
      await sleep(20);
      return upstream.url;
    });
    expect((await get(front.port, 'app.test')).status).toBe(200);
    await sleep(ROUTE_TIMEOUT + 100);
    expect(signals[0]!.aborted).toBe(false);
    expect(timeoutRecords()).toEqual([]);
  });

  it('aborts the signal when the client leaves, and answers nobody', async () => {
    const called = gate<AbortSignal>();
    const front = await start((_req, { signal }) => {
      called.open(signal);
      return new Promise<never>(() => {});
    });
    await abandonedGet(front.port, 'app.test', called.promise);
    const signal = await called.promise;
    await waitFor(() => signal.aborted, 2000, 'the abort');
    expect((signal.reason as DOMException).name).toBe('AbortError');
    await sleep(ROUTE_TIMEOUT + 100);
    // No 504 for a client that is gone: a debug record, as for any client that leaves.
    expect(timeoutRecords()).toEqual([]);
    expect(records.filter((record) => record.level !== 'debug')).toEqual([]);
    expect(records.some((record) => record.message === 'client closed request')).toBe(true);
  });

  it('answers a WebSocket upgrade whose lookup hangs with a 504 on its socket', async () => {
    const signals: AbortSignal[] = [];
    const front = await start((req, { signal }) => {
      signals.push(signal);
      return req.headers.host === 'ok.test' ? upstream.url : new Promise<never>(() => {});
    });
    const refused = await openWebSocket(front.port, 'hang.test');
    if (!isAnswer(refused)) throw new Error('the upgrade went through');
    expect(refused.status).toBe(504);
    expect(refused.headers['proxy-status']).toBe('proxy; error=proxy_internal_error');
    expect(refused.body).toBe('Gateway Timeout');
    expect(signals[0]!.aborted).toBe(true);
    expect(timeoutRecords()).toHaveLength(1);
    // And an upgrade whose lookup answers goes through.
    const opened = await openWebSocket(front.port, 'ok.test');
    if (isAnswer(opened)) throw new Error(`refused: ${opened.status}`);
    expect(opened.message).toBe('hello from app');
    opened.ws.close();
  });

  it('watches a connection once, however many of its pipelined requests wait on lookups', async () => {
    const collected = collectWarnings();
    const release = gate();
    const front = await start(async (_req, { signal }) => {
      void signal;
      await release.promise;
      return upstream.url;
    });
    const socket = (await import('node:net')).connect(front.port, '127.0.0.1');
    let received = '';
    socket.on('data', (data) => (received += data));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('GET /preview/x HTTP/1.1\r\nhost: app.test\r\n\r\n'.repeat(15));
    await sleep(100);
    release.open();
    await waitFor(() => (received.match(/HTTP\/1\.1 200/g) ?? []).length === 15, 3000, 'fifteen answers');
    socket.destroy();
    collected.stop();
    expect(listenerLeaks(collected.warnings)).toEqual([]);
  });
});

describe('the default route deadline', () => {
  it('is 10 s, applied with no timeouts option: a resolver that hangs forever gets a 504 and a warn record, not a hang', async () => {
    expect(DEFAULT_TIMEOUTS.route).toBe(10_000);
    const { logger, records } = captureLogs('info');
    const proxy = createProxy({ routes: () => new Promise<never>(() => {}), logger });
    const front = await listen(http.createServer((req, res) => proxy(req, res)));
    try {
      const startedAt = performance.now();
      const res = await get(front.port, 'app.test', '/', 14_000);
      expect(res.status).toBe(504);
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(9_990);
      expect(records).toEqual([expect.objectContaining({ level: 'warn', code: 'ROUTE_LOOKUP_TIMEOUT', host: 'app.test', timeoutMs: 10_000 })]);
    } finally {
      await proxy.close({ timeout: 100 });
      await front.close();
    }
  }, 20_000);
});

describe('timeouts.route option', () => {
  it.each([0, -1, 1.5, '1000', 2 ** 31])('refuses %p, naming timeouts.route', (value) => {
    expect(() => createProxy({ routes: () => undefined, timeouts: { route: value as number } })).toThrow(ProxyOptionsError);
    expect(() => createProxy({ routes: () => undefined, timeouts: { route: value as number } })).toThrow(/timeouts\.route must be a whole number of milliseconds/);
  });
});
