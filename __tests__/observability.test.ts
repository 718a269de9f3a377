import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import { Gauge, Registry, register as globalRegistry } from 'prom-client';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, portHostRoutes, ProxyOptionsError, type ErrorMessage, type ProxyOptions, type RequestStartMessage, type ResponseMessage, type WebSocketMessage } from '../src/index.ts';
import { startProxyFront, type ProxyFront } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { realProcess } from './helpers/real-process.ts';
import { closedPort, listen, type Running } from './helpers/servers.ts';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function send(port: number, host: string, requestPath: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: requestPath, agent: false, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function openWebSocket(port: number, host: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { host } });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (briefly) for `condition`; the caller asserts the state afterwards either way. */
async function settle(condition: () => boolean | Promise<boolean>, ms = 500): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition()) && performance.now() < deadline) await sleep(10);
}

interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** The samples of one metric in the Prometheus text exposition. */
function samplesOf(text: string, metric: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== metric) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    out.push({ labels, value: Number(match[3]) });
  }
  return out;
}

function valueOf(text: string, metric: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels);
  return samplesOf(text, metric).find((s) => Object.keys(s.labels).length === wanted.length && wanted.every(([k, v]) => s.labels[k] === v))?.value;
}

describe('observability', () => {
  let upstream: Running;
  let wss: WebSocketServer;
  let downPort: number;
  const fronts: ProxyFront[] = [];
  const clients: WebSocket[] = [];

  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      // A real app echoes the request id it was given, so a client can see it.
      const id = req.headers['x-request-id'];
      if (typeof id === 'string') res.setHeader('x-request-id', id);
      // Never answers: its client gives up first.
      if (req.url === '/hang') return;
      if (req.url === '/missing') {
        res.statusCode = 404;
        res.end('no such page');
        return;
      }
      res.end(`ok ${req.url}`);
    });
    wss = new WebSocketServer({ server });
    wss.on('connection', (socket) => socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })));
    upstream = await listen(server);
    downPort = await closedPort();
  });

  afterAll(async () => {
    for (const client of clients) client.terminate();
    for (const started of fronts) await started.close();
    wss.close();
    await upstream.close();
  });

  async function front(extra: Partial<ProxyOptions> = {}): Promise<number> {
    const started = await startProxyFront({
      routes: { 'app.localhost': upstream.url, 'down.localhost': `http://127.0.0.1:${downPort}` },
      logger: captureLogs('info').logger,
      ...extra,
    });
    fronts.push(started);
    return started.port;
  }

  describe('metrics', () => {
    it('counts requests by status and code, their durations, in-flight and open WebSockets', async () => {
      const registry = new Registry();
      const port = await front({ metrics: { registry } });

      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await send(port, 'app.localhost', `/ok-${i}`)).status);
      statuses.push((await send(port, 'app.localhost', '/missing')).status);
      statuses.push((await send(port, 'nobody.localhost', '/')).status);
      statuses.push((await send(port, 'down.localhost', '/')).status);
      expect(statuses).toEqual([200, 200, 200, 404, 404, 502]);

      const durationCount = (text: string) => samplesOf(text, 'honest_proxy_request_duration_seconds_count').reduce((sum, s) => sum + s.value, 0);
      await settle(async () => durationCount(await registry.metrics()) === 6);
      const text = await registry.metrics();

      expect(valueOf(text, 'honest_proxy_requests_total', { proxy: 'default', status: '200', code: 'upstream' })).toBe(3);
      expect(valueOf(text, 'honest_proxy_requests_total', { proxy: 'default', status: '404', code: 'upstream' })).toBe(1);
      expect(valueOf(text, 'honest_proxy_requests_total', { proxy: 'default', status: '404', code: 'ROUTE_NOT_FOUND' })).toBe(1);
      expect(valueOf(text, 'honest_proxy_requests_total', { proxy: 'default', status: '502', code: 'UPSTREAM_UNREACHABLE' })).toBe(1);
      expect(samplesOf(text, 'honest_proxy_requests_total').reduce((sum, s) => sum + s.value, 0)).toBe(6);
      expect(durationCount(text)).toBe(6);
      expect(valueOf(text, 'honest_proxy_in_flight', { proxy: 'default' })).toBe(0);
      expect(valueOf(text, 'honest_proxy_websockets_open', { proxy: 'default' })).toBe(0);

      const ws = await openWebSocket(port, 'app.localhost');
      clients.push(ws);
      const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send('hi');
      expect(await echoed).toBe('hi');
      expect(valueOf(await registry.metrics(), 'honest_proxy_websockets_open', { proxy: 'default' })).toBe(1);

      const closed = new Promise<number>((resolve) => ws.once('close', resolve));
      ws.close(1000);
      expect(await closed).toBe(1000);
      await settle(async () => valueOf(await registry.metrics(), 'honest_proxy_websockets_open', { proxy: 'default' }) === 0);
      const after = await registry.metrics();
      expect(valueOf(after, 'honest_proxy_websockets_open', { proxy: 'default' })).toBe(0);
      // A WebSocket is not an HTTP request: the request counts stay as they were.
      expect(durationCount(after)).toBe(6);
    });

    it('a proxy without metrics answers, and registers nothing anywhere', async () => {
      // Another proxy's registry, watched: a proxy without metrics must not count into it.
      const watched = new Registry();
      await front({ metrics: { registry: watched } });
      // Nor hook into the process (signals, exit, errors) or listen on its own channels.
      const processEvents = ['SIGTERM', 'SIGINT', 'exit', 'beforeExit', 'uncaughtException', 'unhandledRejection', 'warning'] as const;
      // Both: the real process, and jest's copy that code loaded in this file sees as `process`.
      const processListeners = () => processEvents.map((event) => [event, realProcess.listenerCount(event), process.listenerCount(event)]);
      const channelNames = ['honest-proxy:request:start', 'honest-proxy:response', 'honest-proxy:error', 'honest-proxy:websocket:open', 'honest-proxy:websocket:close'];
      const before = processListeners();
      const port = await front();
      const answer = await send(port, 'app.localhost', '/plain');
      expect(answer.status).toBe(200);
      expect(answer.body).toBe('ok /plain');
      await sleep(20);
      expect(await globalRegistry.metrics()).not.toContain('honest_proxy_');
      expect(samplesOf(await watched.metrics(), 'honest_proxy_requests_total')).toEqual([]);
      expect(valueOf(await watched.metrics(), 'honest_proxy_in_flight', { proxy: 'default' })).toBe(0);
      expect(processListeners()).toEqual(before);
      expect(channelNames.filter((name) => diagnostics.hasSubscribers(name))).toEqual([]);
    });
  });

  describe('diagnostics channels', () => {
    const names = {
      start: 'honest-proxy:request:start',
      response: 'honest-proxy:response',
      error: 'honest-proxy:error',
      wsOpen: 'honest-proxy:websocket:open',
      wsClose: 'honest-proxy:websocket:close',
    } as const;
    const seen = {
      start: [] as RequestStartMessage[],
      response: [] as ResponseMessage[],
      error: [] as ErrorMessage[],
      wsOpen: [] as WebSocketMessage[],
      wsClose: [] as WebSocketMessage[],
    };
    const record = (key: keyof typeof names) => (message: unknown) => void (seen[key] as unknown[]).push(message);
    const handlers: Record<keyof typeof names, (message: unknown) => void> = {
      start: record('start'),
      response: record('response'),
      error: record('error'),
      wsOpen: record('wsOpen'),
      wsClose: record('wsClose'),
    };

    beforeAll(() => {
      for (const key of Object.keys(names) as Array<keyof typeof names>) diagnostics.subscribe(names[key], handlers[key]);
    });

    afterAll(() => {
      for (const key of Object.keys(names) as Array<keyof typeof names>) diagnostics.unsubscribe(names[key], handlers[key]);
    });

    it('publishes request start, response, error and WebSocket open/close with the request id', async () => {
      const port = await front();

      const ok = await send(port, 'app.localhost', '/traced');
      expect(ok.status).toBe(200);
      const okId = ok.headers['x-request-id'];
      expect(typeof okId).toBe('string');

      const failed = await send(port, 'down.localhost', '/traced');
      expect(failed.status).toBe(502);
      const failedId = failed.headers['x-request-id'];
      expect(typeof failedId).toBe('string');
      expect(failedId).not.toBe(okId);

      await settle(() => seen.response.length >= 2);

      expect(seen.start.map((m) => m.requestId)).toEqual([okId, failedId]);
      expect(seen.start[0]!.req.url).toBe('/traced');

      const okResponse = seen.response.find((m) => m.requestId === okId);
      expect(okResponse).toMatchObject({ statusCode: 200, code: 'upstream' });
      expect(okResponse!.durationMs).toBeGreaterThanOrEqual(0);
      expect(okResponse!.res.statusCode).toBe(200);

      const failedResponse = seen.response.find((m) => m.requestId === failedId);
      expect(failedResponse).toMatchObject({ statusCode: 502, code: 'UPSTREAM_UNREACHABLE' });
      expect(failedResponse!.durationMs).toBeGreaterThanOrEqual(0);

      expect(seen.error).toHaveLength(1);
      expect(seen.error[0]!.requestId).toBe(failedId);
      expect(seen.error[0]!.error.code).toBe('UPSTREAM_UNREACHABLE');
      expect(seen.error[0]!.error.statusCode).toBe(502);

      const ws = await openWebSocket(port, 'app.localhost');
      clients.push(ws);
      expect(seen.wsOpen).toHaveLength(1);
      expect(seen.wsOpen[0]!.upstream).toBe(upstream.url);
      expect(typeof seen.wsOpen[0]!.requestId).toBe('string');
      expect(seen.wsOpen[0]!.req.url).toBe('/socket');
      expect(seen.wsClose).toHaveLength(0);

      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      ws.close(1000);
      await closed;
      await settle(() => seen.wsClose.length > 0);
      expect(seen.wsClose).toHaveLength(1);
      expect(seen.wsClose[0]!.upstream).toBe(upstream.url);
      expect(seen.wsClose[0]!.requestId).toBe(seen.wsOpen[0]!.requestId);
      expect(seen.wsClose[0]!.socket).toBe(seen.wsOpen[0]!.socket);
      // The upgrade is not an HTTP request on these channels.
      expect(seen.start).toHaveLength(2);
    });

    it("a client that leaves before anyone answered is nginx's 499 client_closed, in metrics and on the response channel, and no error", async () => {
      const registry = new Registry();
      const port = await front({ metrics: { registry } });
      const responsesBefore = seen.response.length;
      const errorsBefore = seen.error.length;
      const gone = await new Promise<string>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/hang', agent: false, headers: { host: 'app.localhost' } });
        req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        setTimeout(() => req.destroy(), 100);
      });
      expect(gone).toBe('ECONNRESET');
      await settle(() => seen.response.length > responsesBefore);
      const text = await registry.metrics();
      expect(samplesOf(text, 'honest_proxy_requests_total')).toEqual([{ labels: { proxy: 'default', status: '499', code: 'client_closed' }, value: 1 }]);
      expect(valueOf(text, 'honest_proxy_request_duration_seconds_count', { proxy: 'default', code: 'client_closed' })).toBe(1);
      expect(valueOf(text, 'honest_proxy_in_flight', { proxy: 'default' })).toBe(0);
      const published = seen.response.slice(responsesBefore);
      expect(published.map((m) => [m.statusCode, m.code, m.req.url])).toEqual([[499, 'client_closed', '/hang']]);
      expect(published[0]!.durationMs).toBeGreaterThanOrEqual(90);
      expect(seen.error.length).toBe(errorsBefore);
    });
  });

  describe('metrics in a real app: several proxies, route labels', () => {
    const requestCount = (text: string) => samplesOf(text, 'honest_proxy_request_duration_seconds_count').reduce((sum, s) => sum + s.value, 0);

    it('two proxies on one registry (the README mounts two) each count under their own `proxy` label', async () => {
      const registry = new Registry();
      const api = await front({ metrics: { registry, name: 'api' } });
      const preview = await front({ metrics: { registry, name: 'preview' } });
      expect((await send(api, 'app.localhost', '/one')).status).toBe(200);
      expect((await send(api, 'app.localhost', '/two')).status).toBe(200);
      expect((await send(preview, 'app.localhost', '/missing')).status).toBe(404);
      await settle(async () => requestCount(await registry.metrics()) === 3);
      const text = await registry.metrics();
      expect(samplesOf(text, 'honest_proxy_requests_total')).toEqual([
        { labels: { proxy: 'api', status: '200', code: 'upstream' }, value: 2 },
        { labels: { proxy: 'preview', status: '404', code: 'upstream' }, value: 1 },
      ]);
      expect(valueOf(text, 'honest_proxy_request_duration_seconds_count', { proxy: 'api', code: 'upstream' })).toBe(2);
      expect(valueOf(text, 'honest_proxy_in_flight', { proxy: 'api' })).toBe(0);
      expect(valueOf(text, 'honest_proxy_in_flight', { proxy: 'preview' })).toBe(0);
      // Each metric is in the registry once.
      expect(text.match(/^# TYPE honest_proxy_requests_total /gm)).toHaveLength(1);
    });

    it('two proxies with one name on one registry share their series', async () => {
      const registry = new Registry();
      const first = await front({ metrics: { registry } });
      const second = await front({ metrics: { registry } });
      expect((await send(first, 'app.localhost', '/a')).status).toBe(200);
      expect((await send(second, 'app.localhost', '/b')).status).toBe(200);
      await settle(async () => requestCount(await registry.metrics()) === 2);
      expect(samplesOf(await registry.metrics(), 'honest_proxy_requests_total')).toEqual([{ labels: { proxy: 'default', status: '200', code: 'upstream' }, value: 2 }]);
    });

    it("refuses, naming the option, a registry whose metric of the same name is not honest-proxy's", () => {
      const registry = new Registry();
      // The fourth the proxy would register: the three before it must not be left behind either.
      new Gauge({ name: 'honest_proxy_websockets_open', help: 'the app its own', registers: [registry] });
      let thrown: unknown;
      try {
        createProxy({ routes: { 'app.localhost': upstream.url }, logger: false, metrics: { registry } });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ProxyOptionsError);
      expect((thrown as Error).message).toMatch(/^honest-proxy: metrics\.registry already has a metric named "honest_proxy_websockets_open" that is not honest-proxy's \(a gauge labelled with nothing; expected a gauge labelled proxy, route\)/);
      expect(registry.getMetricsAsArray().map((metric) => metric.name)).toEqual(['honest_proxy_websockets_open']);
    });

    it('labels routes by route key up to maxRouteLabels, the rest as other, and a request with no route without one', async () => {
      const registry = new Registry();
      const port = await front({
        routes: { 'a.localhost': upstream.url, 'b.localhost': upstream.url, 'c.localhost': upstream.url, 'd.localhost': upstream.url },
        metrics: { registry, routeLabel: true, maxRouteLabels: 2 },
      });
      for (const host of ['a.localhost', 'b.localhost', 'a.localhost', 'c.localhost', 'd.localhost']) expect((await send(port, host, '/')).status).toBe(200);
      expect((await send(port, 'nobody.localhost', '/')).status).toBe(404);
      const ws = await openWebSocket(port, 'b.localhost');
      clients.push(ws);
      await settle(async () => requestCount(await registry.metrics()) === 6);
      const text = await registry.metrics();
      expect(samplesOf(text, 'honest_proxy_requests_total')).toEqual([
        { labels: { proxy: 'default', status: '200', code: 'upstream', route: 'a.localhost' }, value: 2 },
        { labels: { proxy: 'default', status: '200', code: 'upstream', route: 'b.localhost' }, value: 1 },
        { labels: { proxy: 'default', status: '200', code: 'upstream', route: 'other' }, value: 2 },
        { labels: { proxy: 'default', status: '404', code: 'ROUTE_NOT_FOUND' }, value: 1 },
      ]);
      expect(valueOf(text, 'honest_proxy_request_duration_seconds_count', { proxy: 'default', code: 'upstream', route: 'other' })).toBe(2);
      expect(valueOf(text, 'honest_proxy_websockets_open', { proxy: 'default', route: 'b.localhost' })).toBe(1);
      ws.close(1000);
      await settle(async () => valueOf(await registry.metrics(), 'honest_proxy_websockets_open', { proxy: 'default', route: 'b.localhost' }) === 0);
      expect(valueOf(await registry.metrics(), 'honest_proxy_websockets_open', { proxy: 'default', route: 'b.localhost' })).toBe(0);
    });

    it('labels portHostRoutes requests by sandbox id, the same key as onActivity', async () => {
      const registry = new Registry();
      const port = await front({ routes: portHostRoutes({ domain: 'localhost', resolve: () => upstream.url }), metrics: { registry, name: 'preview', routeLabel: true } });
      for (const host of ['3000-abc.localhost', '5173-abc.localhost', '3000-xyz.localhost']) expect((await send(port, host, '/')).status).toBe(200);
      await settle(async () => requestCount(await registry.metrics()) === 3);
      expect(samplesOf(await registry.metrics(), 'honest_proxy_requests_total').map((s) => [s.labels.route, s.value])).toEqual([
        ['abc', 2],
        ['xyz', 1],
      ]);
    });

    it.each<[string, unknown, RegExp]>([
      ['no registry', { registry: undefined, name: 'api' }, /^honest-proxy: metrics\.registry must be a prom-client Registry; got undefined$/],
      ['an empty name', { name: '' }, /^honest-proxy: metrics\.name must be a non-empty string .*; got ""$/],
      ['a name that is not a string', { name: 7 }, /^honest-proxy: metrics\.name must be a non-empty string .*; got 7$/],
      ['routeLabel that is not a boolean', { routeLabel: 'yes' }, /^honest-proxy: metrics\.routeLabel must be true or false; got "yes"$/],
      ['maxRouteLabels of 0', { routeLabel: true, maxRouteLabels: 0 }, /^honest-proxy: metrics\.maxRouteLabels must be a whole number from 1; got 0$/],
      ['maxRouteLabels without routeLabel', { maxRouteLabels: 10 }, /^honest-proxy: metrics\.maxRouteLabels is set but metrics\.routeLabel is not/],
      ['a typo of routeLabel', { routeLabels: true }, /^honest-proxy: unknown option "metrics\.routeLabels"; did you mean "metrics\.routeLabel"\?$/],
    ])('refuses metrics with %s, naming the option', (_case, metrics, message) => {
      const registry = new Registry();
      let thrown: unknown;
      try {
        createProxy({ routes: { 'app.localhost': upstream.url }, logger: false, metrics: { registry, ...(metrics as object) } as ProxyOptions['metrics'] });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ProxyOptionsError);
      expect((thrown as Error).message).toMatch(message);
      // Nothing registered by a proxy that was refused.
      expect(registry.getMetricsAsArray()).toEqual([]);
    });
  });
});
