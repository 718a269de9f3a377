import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { createProxy, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { collectWarnings, listenerLeaks } from './helpers/real-process.ts';
import { closedPort, listen, startUpstream, type Running, type Upstream } from './helpers/servers.ts';

type ExpressFactory = (typeof EXPRESS_VERSIONS)[number][1];

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  elapsedMs: number;
}

/** One request on a connection of its own. */
function send(port: number, host: string, requestPath: string, options: { method?: string; body?: Buffer } = {}): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host };
    if (options.body) headers['content-length'] = String(options.body.length);
    const req = http.request({ host: '127.0.0.1', port, path: requestPath, method: options.method ?? 'GET', agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), elapsedMs: performance.now() - started }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A recording upstream (like startUpstream) on a port chosen in advance: an app that boots late. */
async function upstreamOnPort(port: number, name: string): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
      res.end(name);
    });
  });
  const upstream = { seen, connections: 0, port, url: `http://127.0.0.1:${port}` } as Upstream;
  server.on('connection', (socket: Socket) => {
    upstream.connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  upstream.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return upstream;
}

/** Answers with its name after reading the whole body (startUpstream records it). */
const named = (name: string) => (req: http.IncomingMessage, res: http.ServerResponse) => req.on('end', () => res.end(name)).resume();

const HOST = 'app.localhost';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const fronts: Array<{ running: Running; proxy: HonestProxy }> = [];
const servers: Array<{ close(): Promise<void> }> = [];

async function front(express: ExpressFactory, options: ProxyOptions): Promise<number> {
  const proxy = createProxy(options);
  const app = express();
  app.use(PREFIX, proxy);
  const running = await listen(http.createServer(app));
  fronts.push({ running, proxy });
  return running.port;
}

afterAll(async () => {
  for (const { proxy, running } of fronts.splice(0)) {
    await proxy.close({ timeout: 100 });
    await running.close();
  }
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe.each(EXPRESS_VERSIONS)('startupGrace (%s)', (_name, express) => {
  it('holds a GET and a POST until an upstream that boots 1.5 s late listens, body byte-exact', async () => {
    const { logger } = captureLogs('info');
    const port = await closedPort();
    const proxyPort = await front(express, { routes: { [HOST]: `http://127.0.0.1:${port}` }, startupGrace: 3_000, logger });
    const body = randomBytes(48 * 1024);

    const get = send(proxyPort, HOST, `${PREFIX}/early-get`);
    const post = send(proxyPort, HOST, `${PREFIX}/early-post`, { method: 'POST', body });
    await sleep(1_500);
    const late = await upstreamOnPort(port, 'late');
    servers.push(late);

    const [got, posted] = await Promise.all([get, post]);
    expect(got.status).toBe(200);
    expect(String(got.body)).toBe('late');
    expect(posted.status).toBe(200);
    expect(String(posted.body)).toBe('late');
    expect(got.elapsedMs).toBeGreaterThanOrEqual(1_400);
    const atUpstream = late.seen.filter((r) => r.method === 'POST');
    expect(atUpstream).toHaveLength(1);
    expect(atUpstream[0]!.url).toBe('/early-post');
    expect(atUpstream[0]!.body.equals(body)).toBe(true);
    expect(late.seen.filter((r) => r.method === 'GET').map((r) => r.url)).toEqual(['/early-get']);
  });
});

describe('startupGrace retries leave no listeners behind', () => {
  const [, express5] = EXPRESS_VERSIONS[0]!;

  it('a request retried 6+ times ends with the same close/error listeners on res and req as one that went through at once', async () => {
    const collected = collectWarnings();
    try {
      const { logger, records } = captureLogs('debug');
      const up = await startUpstream(named('up'));
      servers.push(up);
      const port = await closedPort();
      const proxy = createProxy({ routes: { 'up.localhost': up.url, [HOST]: `http://127.0.0.1:${port}` }, startupGrace: 5_000, logger });
      // What each request carries once the proxy has answered it.
      const counts = new Map<string, { resClose: number; resError: number; reqError: number }>();
      const app = express5();
      app.use(PREFIX, (req, res, next) => {
        const path = req.url;
        res.once('finish', () =>
          counts.set(path, { resClose: res.listenerCount('close'), resError: res.listenerCount('error'), reqError: req.listenerCount('error') }),
        );
        next();
      });
      app.use(PREFIX, proxy);
      const running = await listen(http.createServer(app));
      fronts.push({ running, proxy });

      const direct = await send(running.port, 'up.localhost', `${PREFIX}/direct`);
      expect(String(direct.body)).toBe('up');
      // Tries at 0, 100, 300, 700, 1500 and 2500 ms fail; the one at 3500 ms finds the upstream.
      const waiting = send(running.port, HOST, `${PREFIX}/waited`);
      await sleep(2_700);
      const late = await upstreamOnPort(port, 'late');
      servers.push(late);
      const waited = await waiting;
      expect(waited.status).toBe(200);
      expect(String(waited.body)).toBe('late');

      const retries = records.filter((r) => r.message === 'upstream connect failed; trying again' && r.path === `${PREFIX}/waited`);
      expect(retries.length).toBeGreaterThanOrEqual(6);
      expect(counts.get('/waited')).toEqual(counts.get('/direct'));
      expect(listenerLeaks(collected.warnings)).toEqual([]);
    } finally {
      collected.stop();
    }
  });
});

describe('startupGrace limits', () => {
  const [, express5] = EXPRESS_VERSIONS[0]!;

  it('without a grace, a refused connect is a 502 at once', async () => {
    const port = await closedPort();
    const proxyPort = await front(express5, { routes: { [HOST]: `http://127.0.0.1:${port}` }, logger: captureLogs('info').logger });
    const answer = await send(proxyPort, HOST, `${PREFIX}/x`);
    expect(answer.status).toBe(502);
    expect(answer.headers['proxy-status']).toBe('proxy; error=connection_refused');
    expect(answer.elapsedMs).toBeLessThan(300);
  });

  it('with startupGrace 500 and an upstream that never comes: 502 with Retry-After after about 500 ms', async () => {
    const port = await closedPort();
    const proxyPort = await front(express5, { routes: { [HOST]: `http://127.0.0.1:${port}` }, startupGrace: 500, logger: captureLogs('info').logger });
    const answer = await send(proxyPort, HOST, `${PREFIX}/x`);
    expect(answer.status).toBe(502);
    // Whole seconds (RFC 9110 10.2.3), never less than 1.
    expect(answer.headers['retry-after']).toBe('1');
    expect(answer.headers['proxy-status']).toBe('proxy; error=connection_refused');
    expect(answer.elapsedMs).toBeGreaterThanOrEqual(400);
    expect(answer.elapsedMs).toBeLessThan(1_500);
  });

  it('the Retry-After after a startup grace is the grace in seconds, rounded up (1 200 ms: 2)', async () => {
    const port = await closedPort();
    const proxyPort = await front(express5, { routes: { [HOST]: `http://127.0.0.1:${port}` }, startupGrace: 1_200, logger: captureLogs('info').logger });
    const answer = await send(proxyPort, HOST, `${PREFIX}/x`);
    expect(answer.status).toBe(502);
    expect(answer.headers['retry-after']).toBe('2');
    expect(answer.headers['proxy-status']).toBe('proxy; error=connection_refused');
  });

  it('a per-route { target, startupGrace } waits the same way (GET and POST), and gives up the same way', async () => {
    const port = await closedPort();
    const never = await closedPort();
    const proxyPort = await front(express5, {
      routes: {
        [HOST]: { target: `http://127.0.0.1:${port}`, startupGrace: 3_000 },
        'never.localhost': { target: `http://127.0.0.1:${never}`, startupGrace: 500 },
      },
      logger: captureLogs('info').logger,
    });
    const body = randomBytes(10_000);
    const get = send(proxyPort, HOST, `${PREFIX}/route-get`);
    const post = send(proxyPort, HOST, `${PREFIX}/route-post`, { method: 'POST', body });
    const gaveUp = send(proxyPort, 'never.localhost', `${PREFIX}/x`);
    await sleep(1_000);
    const late = await upstreamOnPort(port, 'late');
    servers.push(late);

    const [got, posted, refused] = await Promise.all([get, post, gaveUp]);
    expect([got.status, posted.status]).toEqual([200, 200]);
    expect(late.seen.find((r) => r.method === 'POST')?.body.equals(body)).toBe(true);
    expect(refused.status).toBe(502);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers['proxy-status']).toBe('proxy; error=connection_refused');
    expect(refused.elapsedMs).toBeGreaterThanOrEqual(400);
    expect(refused.elapsedMs).toBeLessThan(1_500);
  });
});

/** The sum of a counter's samples in the text exposition, and the samples themselves. */
function samples(text: string, metric: string): Array<{ labels: string; value: number }> {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `))
    .map((line) => {
      const at = line.lastIndexOf(' ');
      return { labels: line.slice(metric.length, at), value: Number(line.slice(at + 1)) };
    });
}

describe('several upstreams per route', () => {
  it('round robins, takes a dead upstream out once, and loses no request (GET or POST) to it', async () => {
    const a = await startUpstream(named('A'));
    const b = await startUpstream(named('B'));
    servers.push(a, b);
    const registry = new Registry();
    const { logger, records } = captureLogs('debug');
    const [, express5] = EXPRESS_VERSIONS[0]!;
    const proxyPort = await front(express5, { routes: { 'lb.localhost': [a.url, b.url] }, metrics: { registry }, logger });

    const warmUp: string[] = [];
    for (let i = 0; i < 6; i++) {
      const answer = await send(proxyPort, 'lb.localhost', `${PREFIX}/warm-${i}`);
      expect(answer.status).toBe(200);
      warmUp.push(String(answer.body));
    }
    expect(warmUp).toEqual(['A', 'B', 'A', 'B', 'A', 'B']);

    // B dies: its port refuses from now on.
    await b.close();
    await sleep(30);
    const bodies = Array.from({ length: 7 }, (_, i) => randomBytes(2_000 + i * 997));
    const failures: string[] = [];
    const check = (answer: Answer, what: string) => {
      if (answer.status !== 200 || String(answer.body) !== 'A') failures.push(`${what}: ${answer.status} ${String(answer.body).slice(0, 60)}`);
    };
    // The first two after the kill: one is B's turn, and it is a POST.
    check(await send(proxyPort, 'lb.localhost', `${PREFIX}/post-0`, { method: 'POST', body: bodies[0] }), 'post-0');
    check(await send(proxyPort, 'lb.localhost', `${PREFIX}/post-1`, { method: 'POST', body: bodies[1] }), 'post-1');

    // B is out now. Something listens on its port again: nothing may reach it while B is out (failTimeout 10 s).
    let reachedB = 0;
    const recorder = net.createServer((socket) => {
      reachedB++;
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      recorder.once('error', reject);
      recorder.listen(b.port, '127.0.0.1', resolve);
    });
    servers.push({ close: () => new Promise<void>((resolve) => recorder.close(() => resolve())) });

    let posts = 2;
    for (let i = 0; i < 40; i++) {
      check(await send(proxyPort, 'lb.localhost', `${PREFIX}/get-${i}`), `get-${i}`);
      if (i % 8 === 7) {
        check(await send(proxyPort, 'lb.localhost', `${PREFIX}/post-${posts}`, { method: 'POST', body: bodies[posts] }), `post-${posts}`);
        posts++;
      }
    }
    expect(failures).toEqual([]);
    expect(reachedB).toBe(0);

    const postsAtA = a.seen.filter((r) => r.method === 'POST');
    expect(postsAtA.map((r) => r.url)).toEqual(bodies.map((_, i) => `/post-${i}`));
    for (const [i, seen] of postsAtA.entries()) expect(seen.body.equals(bodies[i]!)).toBe(true);
    expect(a.seen.filter((r) => r.url.startsWith('/get-'))).toHaveLength(40);

    const ejections = samples(await registry.metrics(), 'honest_proxy_upstream_ejections_total');
    expect(ejections).toEqual([{ labels: `{proxy="default",upstream="${b.url}"}`, value: 1 }]);
    const warns = records.filter((r) => r.level === 'warn' && r.message.startsWith('upstream taken out of rotation'));
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ upstream: b.url, forMs: 10_000 });
  });

  it('with every upstream of the route down: 502 with Retry-After', async () => {
    const [p1, p2] = [await closedPort(), await closedPort()];
    const [, express5] = EXPRESS_VERSIONS[0]!;
    const proxyPort = await front(express5, {
      routes: { 'down.localhost': [`http://127.0.0.1:${p1}`, `http://127.0.0.1:${p2}`] },
      logger: captureLogs('info').logger,
    });
    const first = await send(proxyPort, 'down.localhost', `${PREFIX}/x`);
    const second = await send(proxyPort, 'down.localhost', `${PREFIX}/x`);
    // Both out for the default failTimeout (10 s): the first comes back in 10 s.
    const seen = [first, second].map((answer) => ({ status: answer.status, retryAfter: answer.headers['retry-after'], proxyStatus: answer.headers['proxy-status'] }));
    expect(seen).toEqual([
      { status: 502, retryAfter: '10', proxyStatus: 'proxy; error=destination_unavailable' },
      { status: 502, retryAfter: '10', proxyStatus: 'proxy; error=destination_unavailable' },
    ]);
  });

  it('with every upstream out, Retry-After is the seconds until the first comes back (failTimeout 7 s, then 4 s)', async () => {
    const [p1, p2] = [await closedPort(), await closedPort()];
    const [, express5] = EXPRESS_VERSIONS[0]!;
    const proxyPort = await front(express5, {
      routes: { 'down.localhost': [`http://127.0.0.1:${p1}`, `http://127.0.0.1:${p2}`] },
      passiveHealth: { failTimeout: 7_000 },
      logger: captureLogs('info').logger,
    });
    const first = await send(proxyPort, 'down.localhost', `${PREFIX}/x`);
    expect([first.status, first.headers['retry-after']]).toEqual([502, '7']);
    await sleep(3_100);
    // Both are still out; the first is back 7 s after it went out: in 4 s, rounded up.
    const later = await send(proxyPort, 'down.localhost', `${PREFIX}/x`);
    expect([later.status, later.headers['retry-after']]).toEqual([502, '4']);
  });

  it.each(EXPRESS_VERSIONS)('a route object { target: [A, B] } balances and fails over too (%s)', async (_name, express) => {
    const a = await startUpstream(named('A'));
    const b = await startUpstream(named('B'));
    servers.push(a, b);
    const proxyPort = await front(express, { routes: { 'obj.localhost': { target: [a.url, b.url] } }, logger: captureLogs('info').logger });
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push(String((await send(proxyPort, 'obj.localhost', `${PREFIX}/r-${i}`)).body));
    expect(seen).toEqual(['A', 'B', 'A', 'B']);
    await b.close();
    await sleep(30);
    const body = randomBytes(5_000);
    const after = [await send(proxyPort, 'obj.localhost', `${PREFIX}/p-0`, { method: 'POST', body }), await send(proxyPort, 'obj.localhost', `${PREFIX}/p-1`, { method: 'POST', body })];
    expect(after.map((answer) => [answer.status, String(answer.body)])).toEqual([
      [200, 'A'],
      [200, 'A'],
    ]);
    expect(a.seen.filter((r) => r.method === 'POST').every((r) => r.body.equals(body))).toBe(true);
    expect(a.seen.filter((r) => r.method === 'POST')).toHaveLength(2);
  });
});
