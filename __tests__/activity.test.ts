import { createHook } from 'node:async_hooks';
import http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, portHostRoutes, ProxyOptionsError, type ActivityInfo, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { activityOf, createActivity } from '../src/observe/activity.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyFront } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { listen, type Running } from './helpers/servers.ts';

interface Report {
  key: string;
  info: ActivityInfo;
  at: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (briefly) for `condition`; the caller asserts the state afterwards either way. */
async function settle(condition: () => boolean, ms = 2_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition() && performance.now() < deadline) await sleep(5);
}

function get(port: number, host: string, path: string, agent: http.Agent | false = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

function openWebSocket(port: number, host: string, path: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host } });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function gaps(reports: Report[]): number[] {
  return reports.slice(1).map((report, i) => report.at - reports[i]!.at);
}

describe('activity reporting (onActivity)', () => {
  let upstream: Running;
  let wss: WebSocketServer;
  const fronts: Array<{ close(): Promise<void> }> = [];
  const clients: WebSocket[] = [];

  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      if (req.url?.startsWith('/stream')) {
        // A response that streams for `ms`, a chunk every 20 ms: an event stream, a long download.
        const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms'));
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const tick = setInterval(() => res.write('data: tick\n\n'), 20);
        setTimeout(() => {
          clearInterval(tick);
          res.end('data: done\n\n');
        }, ms);
        res.on('close', () => clearInterval(tick));
        return;
      }
      res.end(`ok ${req.url}`);
    });
    wss = new WebSocketServer({ server });
    wss.on('connection', (socket) => socket.on('message', (data) => socket.send(data)));
    upstream = await listen(server);
  });

  afterAll(async () => {
    for (const client of clients) client.terminate();
    for (const started of fronts) await started.close();
    wss.close();
    await upstream.close();
  });

  /** A proxy on its own server; reports are collected with the time they came. */
  async function front(extra: Partial<ProxyOptions> = {}): Promise<{ port: number; proxy: HonestProxy; reports: Report[] }> {
    const reports: Report[] = [];
    const started = await startProxyFront({
      routes: () => upstream.url,
      logger: captureLogs('info').logger,
      onActivity: (key, info) => void reports.push({ key, info, at: performance.now() }),
      ...extra,
    });
    fronts.push(started);
    return { port: started.port, proxy: started.proxy, reports };
  }

  it('reports a key once per interval however many requests pass, and again once the interval has passed', async () => {
    const interval = 1_000;
    const { port, reports } = await front({ activityInterval: interval });
    const started = performance.now();
    for (let i = 0; i < 20; i++) expect((await get(port, 'a.localhost', `/a-${i}`)).status).toBe(200);
    expect((await get(port, 'b.localhost', '/b')).status).toBe(200);
    // The burst must fit in one interval for the count below to mean anything.
    expect(performance.now() - started).toBeLessThan(interval);
    expect(reports.map((r) => [r.key, r.info])).toEqual([
      ['a.localhost', { kind: 'http', openConnections: 1 }],
      ['b.localhost', { kind: 'http', openConnections: 1 }],
    ]);

    await sleep(interval - (performance.now() - reports[0]!.at) + 20);
    expect((await get(port, 'a.localhost', '/again')).status).toBe(200);
    expect(reports.map((r) => r.key)).toEqual(['a.localhost', 'b.localhost', 'a.localhost']);
    expect(reports[2]!.at - reports[0]!.at).toBeGreaterThanOrEqual(interval - 1);
  });

  it('reports a streaming response every interval while it stays open, then forgets the key', async () => {
    const interval = 100;
    const { port, proxy, reports } = await front({ activityInterval: interval });
    const answer = await get(port, 'stream.localhost', '/stream?ms=650');
    expect(answer.status).toBe(200);
    expect(answer.body.endsWith('data: done\n\n')).toBe(true);
    const during = reports.slice();
    expect(during.every((r) => r.key === 'stream.localhost' && r.info.kind === 'http' && r.info.openConnections === 1)).toBe(true);
    // 650 ms open: the first report, then one each 100 ms.
    expect(during.length).toBeGreaterThanOrEqual(5);
    expect(during.length).toBeLessThanOrEqual(7);
    for (const gap of gaps(during)) {
      expect(gap).toBeGreaterThanOrEqual(interval - 1);
      expect(gap).toBeLessThan(interval * 2.5);
    }

    // Closed: no report after it beyond one already due, and nothing remembered.
    await sleep(interval * 3);
    expect(reports.length).toBeLessThanOrEqual(during.length + 1);
    expect(activityOf(proxy)!.size).toBe(0);
  });

  it('reports a WebSocket every interval while it stays open, and a request beside it counts as open too', async () => {
    const interval = 100;
    const { port, proxy, reports } = await front({ activityInterval: interval });
    const ws = await openWebSocket(port, 'ws.localhost', '/socket');
    clients.push(ws);
    expect(reports.map((r) => [r.key, r.info])).toEqual([['ws.localhost', { kind: 'websocket', openConnections: 1 }]]);

    // A stream for the same key beside it: openConnections counts both, and a
    // WebSocket open makes the heartbeat's kind `websocket`.
    const stream = get(port, 'ws.localhost', '/stream?ms=250');
    await sleep(560);
    const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
    ws.send('still here');
    expect(await echoed).toBe('still here');
    expect((await stream).status).toBe(200);

    const open = reports.slice();
    expect(open.every((r) => r.key === 'ws.localhost' && r.info.kind === 'websocket')).toBe(true);
    expect(open.length).toBeGreaterThanOrEqual(4);
    expect(open.length).toBeLessThanOrEqual(7);
    expect(open.some((r) => r.info.openConnections === 2)).toBe(true);
    expect(open.at(-1)!.info.openConnections).toBe(1);
    for (const gap of gaps(open)) {
      expect(gap).toBeGreaterThanOrEqual(interval - 1);
      expect(gap).toBeLessThan(interval * 2.5);
    }

    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    ws.close(1000);
    await closed;
    await sleep(interval * 3);
    expect(reports.length).toBeLessThanOrEqual(open.length + 1);
    expect(activityOf(proxy)!.size).toBe(0);
  });

  it('knows portHostRoutes hosts by their sandbox id: every port of one sandbox is one key', async () => {
    const { port, reports } = await front({
      activityInterval: 1_000,
      routes: portHostRoutes({ domain: 'preview.localhost', resolve: () => upstream.url }),
    });
    for (const host of ['3000-abc.preview.localhost', '5173-abc.preview.localhost', '3000-xyz.preview.localhost', '3000-abc.preview.localhost']) {
      expect((await get(port, host, '/')).status).toBe(200);
    }
    // A host that routes nowhere is no activity of anyone's.
    expect((await get(port, 'nothing.localhost', '/')).status).toBe(404);
    expect(reports.map((r) => r.key)).toEqual(['abc', 'xyz']);
  });

  it('never lets the listener reach the client: a throw or a rejection is logged once per key per interval', async () => {
    const interval = 1_000;
    for (const failure of ['throw', 'reject'] as const) {
      const { logger, records } = captureLogs('info');
      let calls = 0;
      const { port } = await front({
        logger,
        activityInterval: interval,
        onActivity: (key) => {
          calls++;
          if (failure === 'throw') throw new Error(`platform down for ${key}`);
          return Promise.reject(new Error(`platform down for ${key}`));
        },
      });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await get(port, 'a.localhost', '/')).status);
      statuses.push((await get(port, 'b.localhost', '/')).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
      await sleep(20);
      expect(calls).toBe(2);
      const warns = records.filter((r) => r.message === 'onActivity failed');
      expect(warns.map((r) => [r.level, r.key, (r.cause as { message: string }).message])).toEqual([
        ['warn', 'a.localhost', 'platform down for a.localhost'],
        ['warn', 'b.localhost', 'platform down for b.localhost'],
      ]);
    }
  });

  it('remembers nothing of 5,000 hosts once they went quiet, and stops on close()', async () => {
    const interval = 300;
    const { port, proxy, reports } = await front({ activityInterval: interval });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const hosts = Array.from({ length: 5_000 }, (_, i) => `h${i}.localhost`);
    const statuses = new Map<number, number>();
    for (let i = 0; i < hosts.length; i += 64) {
      const answers = await Promise.all(hosts.slice(i, i + 64).map((host) => get(port, host, '/', agent)));
      for (const { status } of answers) statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    agent.destroy();
    expect([...statuses]).toEqual([[200, 5_000]]);
    expect(new Set(reports.map((r) => r.key)).size).toBe(5_000);
    const activity = activityOf(proxy)!;
    expect(activity.size).toBeGreaterThan(0);

    // Quiet now: every key is forgotten within an interval of its report (and a sweep's gathering).
    await settle(() => activity.size === 0, interval * 4 + 5_000);
    expect(activity.size).toBe(0);
    const reported = reports.length;

    // After close(): no report, nothing remembered, no timer of its own left.
    const ws = await openWebSocket(port, 'late.localhost', '/socket');
    clients.push(ws);
    expect(activity.size).toBe(1);
    await proxy.close({ timeout: 100 });
    expect(activity.size).toBe(0);
    await sleep(interval * 2);
    expect(reports.length).toBe(reported + 1);
  });

  it.each(EXPRESS_VERSIONS)('%s: reports HTTP and a WebSocket that came through the app', async (_name, express) => {
    const interval = 100;
    const reports: Report[] = [];
    const proxy = createProxy({
      routes: portHostRoutes({ domain: 'localhost', resolve: () => upstream.url }),
      logger: captureLogs('info').logger,
      activityInterval: interval,
      onActivity: (key, info) => void reports.push({ key, info, at: performance.now() }),
    });
    const app = express();
    app.use(PREFIX, proxy);
    const server = http.createServer(app);
    server.on('upgrade', proxy.upgradeThrough(app, PREFIX));
    const running = await listen(server);
    fronts.push({ close: async () => (await proxy.close({ timeout: 100 }), await running.close()) });

    const answer = await get(running.port, '3000-sbx.localhost', `${PREFIX}/page`);
    expect(answer).toEqual({ status: 200, body: 'ok /page' });
    expect(reports.map((r) => [r.key, r.info])).toEqual([['sbx', { kind: 'http', openConnections: 1 }]]);

    await sleep(interval + 10);
    const ws = await openWebSocket(running.port, '5173-sbx.localhost', `${PREFIX}/socket`);
    clients.push(ws);
    await sleep(interval * 3 + 50);
    const open = reports.slice(1);
    expect(open.length).toBeGreaterThanOrEqual(3);
    expect(open.every((r) => r.key === 'sbx' && r.info.kind === 'websocket' && r.info.openConnections === 1)).toBe(true);
    ws.terminate();
    await settle(() => activityOf(proxy)!.size === 0, interval * 4);
    expect(activityOf(proxy)!.size).toBe(0);
  });

  it('keeps one unref\'d timer for any number of keys, and none once they are forgotten', async () => {
    // Every Timeout made from here on, while alive; unref'd ones are the activity's (the test's own sleeps are ref'd).
    const alive = new Map<number, { hasRef(): boolean }>();
    let made = 0;
    const hook = createHook({
      init(id, type, _trigger, resource) {
        if (type !== 'Timeout') return;
        made++;
        alive.set(id, resource as { hasRef(): boolean });
      },
      destroy(id) {
        alive.delete(id);
      },
    }).enable();
    const unrefd = () => [...alive.values()].filter((timer) => !timer.hasRef()).length;
    try {
      const activity = createActivity({ listener: () => {}, interval: 200 }, captureLogs('info').logger);
      expect(made).toBe(0);
      for (let i = 0; i < 1_000; i++) activity.began(`k${i}`, i % 2 === 0 ? 'http' : 'websocket');
      expect(activity.size).toBe(1_000);
      expect(made).toBe(1);
      expect(unrefd()).toBe(1);
      for (let i = 0; i < 1_000; i++) activity.ended(`k${i}`, i % 2 === 0 ? 'http' : 'websocket');
      await settle(() => activity.size === 0, 2_000);
      expect(activity.size).toBe(0);
      await sleep(20);
      expect(unrefd()).toBe(0);
    } finally {
      hook.disable();
    }
  });

  it.each<[string, Partial<ProxyOptions>, RegExp]>([
    ['onActivity that is not a function', { onActivity: 'https://platform/activity' as never }, /^honest-proxy: onActivity must be a function .*; got "https:\/\/platform\/activity"$/],
    ['activityInterval of 0', { onActivity: () => {}, activityInterval: 0 }, /^honest-proxy: activityInterval must be a whole number of milliseconds from 1 to \d+; got 0$/],
    ['activityInterval as a string', { onActivity: () => {}, activityInterval: '30s' as never }, /^honest-proxy: activityInterval must be a whole number .*; got "30s"$/],
    ['activityInterval without onActivity', { activityInterval: 50_000 }, /^honest-proxy: activityInterval is set but onActivity is not/],
    ['a typo of onActivity', { onActiviti: () => {} } as never, /^honest-proxy: unknown option "onActiviti"; did you mean "onActivity"\?$/],
  ])('refuses %s at createProxy, naming the option', (_case, extra, message) => {
    let thrown: unknown;
    try {
      createProxy({ routes: () => upstream.url, logger: false, ...extra });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect((thrown as Error).message).toMatch(message);
  });
});
