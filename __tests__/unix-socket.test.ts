import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, ProxyOptionsError, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyFront, type ProxyFront } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { listen, startUpstream } from './helpers/servers.ts';

/**
 * Upstreams on unix domain sockets: real servers listening on socket files
 * in a temporary directory, reached through the proxy over HTTP and WebSocket.
 */

type ExpressFactory = (typeof EXPRESS_VERSIONS)[number][1];

const HOST = 'app.localhost';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface SocketUpstream {
  path: string;
  /** Requests as the upstream saw them. */
  seen: Array<{ url: string; headers: http.IncomingHttpHeaders }>;
  connections: () => number;
  close(): Promise<void>;
}

let dir: string;
const fronts: ProxyFront[] = [];
const servers: Array<{ close(): Promise<void> }> = [];

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'honest-proxy-unix-'));
});

afterAll(async () => {
  for (const started of fronts.splice(0)) await started.close();
  await Promise.all(servers.splice(0).map((server) => server.close()));
  rmSync(dir, { recursive: true, force: true });
});

let socketCount = 0;
const socketPath = () => path.join(dir, `app-${++socketCount}.sock`);

/** An HTTP server on a socket file (made now or, with `atPath`, at a path chosen earlier) that answers `unix <url>`. */
async function startSocketUpstream(atPath = socketPath(), handler?: http.RequestListener): Promise<SocketUpstream> {
  const seen: SocketUpstream['seen'] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    if (handler) handler(req, res);
    else res.end(`unix ${req.url}`);
  });
  const sockets = new Set<Socket>();
  let connections = 0;
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(atPath, resolve);
  });
  const upstream: SocketUpstream = {
    path: atPath,
    seen,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(upstream);
  return upstream;
}

/** A socket file with nobody listening on it: what a crashed server leaves behind (bound by Python, never listened on). */
function staleSocketFile(): string {
  const at = socketPath();
  execFileSync('python3', ['-c', 'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])', at]);
  return at;
}

async function front(options: ProxyOptions, express?: ExpressFactory): Promise<number> {
  const started = await startProxyFront(options, express);
  fronts.push(started);
  return started.port;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(port: number, requestPath: string, options: { agent?: http.Agent; method?: string; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: HOST };
    if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
    const req = http.request({ host: '127.0.0.1', port, path: requestPath, method: options.method ?? 'GET', agent: options.agent ?? false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe.each(EXPRESS_VERSIONS)('unix socket upstreams over HTTP (%s)', (_name, express) => {
  it("'unix:/path' routes there with the client's Host, and keeps one pooled connection for several requests", async () => {
    const upstream = await startSocketUpstream();
    const { logger, records } = captureLogs('info');
    const port = await front({ routes: { [HOST]: `unix:${upstream.path}` }, logger }, express);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(port, `${PREFIX}/one?x=1`, { agent });
      const second = await get(port, `${PREFIX}/two`, { agent });
      expect([first.status, first.body, second.status, second.body]).toEqual([200, 'unix /one?x=1', 200, 'unix /two']);
    } finally {
      agent.destroy();
    }
    expect(upstream.seen.map((r) => r.headers.host)).toEqual([HOST, HOST]);
    // Keep-alive to the socket, as to a TCP upstream: the second request reused the first's connection.
    expect(upstream.connections()).toBe(1);
    expect(records).toEqual([]);
  });

  it('{ socketPath } with changeOrigin sends Host: localhost, and carries the route settings (bodyLimit)', async () => {
    const upstream = await startSocketUpstream();
    const port = await front({ routes: { [HOST]: { socketPath: upstream.path, bodyLimit: 4 } }, changeOrigin: true, logger: captureLogs('info').logger }, express);
    const answer = await get(port, `${PREFIX}/in`);
    expect([answer.status, answer.body]).toEqual([200, 'unix /in']);
    expect(upstream.seen[0]!.headers.host).toBe('localhost');
    const tooBig = await get(port, `${PREFIX}/post`, { method: 'POST', body: 'hello' });
    expect(tooBig.status).toBe(413);
    expect(upstream.seen).toHaveLength(1);
  });
});

describe('unix socket upstreams that are not there', () => {
  it('a socket file that does not exist: 502 destination_not_found, the path only in the log', async () => {
    const missing = path.join(dir, 'never.sock');
    const { logger, records } = captureLogs('info');
    const port = await front({ routes: { [HOST]: { socketPath: missing } }, logger });
    const answer = await get(port, '/x');
    expect([answer.status, answer.headers['proxy-status'], answer.body]).toEqual([502, 'proxy; error=destination_not_found', 'Bad Gateway']);
    expect(records.map((r) => [r.level, r.code, r.upstream, (r.cause as { code?: string } | undefined)?.code])).toEqual([
      ['warn', 'UPSTREAM_UNREACHABLE', `unix:${missing}`, 'ENOENT'],
    ]);
  });

  it('a socket file nobody listens on: 502 connection_refused', async () => {
    const stale = staleSocketFile();
    expect(existsSync(stale)).toBe(true);
    const { logger, records } = captureLogs('info');
    const port = await front({ routes: { [HOST]: `unix:${stale}` }, logger });
    const answer = await get(port, '/x');
    expect([answer.status, answer.headers['proxy-status'], answer.body]).toEqual([502, 'proxy; error=connection_refused', 'Bad Gateway']);
    expect(records.map((r) => (r.cause as { code?: string } | undefined)?.code)).toEqual(['ECONNREFUSED']);
  });

  it('startupGrace waits for a socket file that does not exist yet (HTTP and WebSocket)', async () => {
    const later = socketPath();
    const { logger, records } = captureLogs('info');
    const port = await front({ routes: { [HOST]: `unix:${later}` }, startupGrace: 3_000, logger });
    const started = performance.now();
    const answer = get(port, '/early');
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws-early`, { headers: { host: HOST } });
    const greeting = new Promise<string>((resolve, reject) => {
      ws.once('message', (data) => resolve(String(data)));
      ws.once('error', reject);
    });
    await sleep(600);
    const server = http.createServer((req, res) => res.end(`late ${req.url}`));
    const wss = new WebSocketServer({ server });
    wss.on('connection', (socket, req) => socket.send(`late ws ${req.url}`));
    await new Promise<void>((resolve) => server.listen(later, resolve));
    servers.push({ close: () => new Promise<void>((resolve) => (wss.close(), server.closeAllConnections(), server.close(() => resolve()))) });

    expect(await answer).toMatchObject({ status: 200, body: 'late /early' });
    expect(await greeting).toBe('late ws /ws-early');
    expect(performance.now() - started).toBeGreaterThanOrEqual(550);
    ws.terminate();
    expect(records).toEqual([]);
  });

  it('startupGrace that runs out on a missing socket file: 502 destination_not_found with Retry-After', async () => {
    const { logger } = captureLogs('info');
    const port = await front({ routes: { [HOST]: `unix:${path.join(dir, 'still-missing.sock')}` }, startupGrace: 300, logger });
    const answer = await get(port, '/x');
    expect([answer.status, answer.headers['proxy-status'], answer.headers['retry-after']]).toEqual([502, 'proxy; error=destination_not_found', '1']);
  });
});

describe('balanced arrays mixing sockets and TCP origins', () => {
  it('round robin over both; a missing socket is taken out under its own name while the other socket stays in', async () => {
    const onSocket = await startSocketUpstream();
    const onTcp = await startUpstream((req, res) => res.end(`tcp ${req.url}`));
    servers.push(onTcp);
    const port = await front({ routes: { [HOST]: [`unix:${onSocket.path}`, onTcp.url] }, logger: captureLogs('info').logger });
    const bodies = [];
    for (let i = 0; i < 4; i++) bodies.push((await get(port, `/${i}`)).body);
    expect(bodies).toEqual(['unix /0', 'tcp /1', 'unix /2', 'tcp /3']);

    // Two sockets, one missing: each has its own health (by path, not by URL origin, which is "null" for both).
    const missing = path.join(dir, 'gone.sock');
    const second = await startSocketUpstream();
    const registry = new Registry();
    const { logger, records } = captureLogs('info');
    const mixed = await front({ routes: { [HOST]: [`unix:${missing}`, `unix:${second.path}`, onTcp.url] }, logger, metrics: { registry } });
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push((await get(mixed, `/m${i}`)).body);
    // m0 tries the missing socket, which is taken out, then the next one; from then on the turns skip it.
    expect(answers).toEqual(['unix /m0', 'tcp /m1', 'unix /m2', 'unix /m3', 'tcp /m4', 'unix /m5']);
    expect(second.seen.map((r) => r.url)).toEqual(['/m0', '/m2', '/m3', '/m5']);
    expect(records.filter((r) => r.message.startsWith('upstream taken out')).map((r) => r.upstream)).toEqual([`unix:${missing}`]);
    const ejections = await registry.getSingleMetric('honest_proxy_upstream_ejections_total')!.get();
    expect(ejections.values.map((v) => [v.labels.upstream, v.value])).toEqual([[`unix:${missing}`, 1]]);
  });
});

describe('WebSockets over a unix socket', () => {
  it('an echo WebSocket through the proxy, Host as the client sent it', async () => {
    const at = socketPath();
    const server = http.createServer();
    const wss = new WebSocketServer({ server });
    const hosts: Array<string | undefined> = [];
    wss.on('connection', (socket, req) => {
      hosts.push(req.headers.host);
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
    await new Promise<void>((resolve) => server.listen(at, resolve));
    servers.push({ close: () => new Promise<void>((resolve) => (wss.close(), server.closeAllConnections(), server.close(() => resolve()))) });

    const port = await front({ routes: { [HOST]: { socketPath: at } }, logger: captureLogs('info').logger });
    const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { host: HOST } });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
    ws.send('over the socket');
    expect(await echoed).toBe('over the socket');
    expect(hosts).toEqual([HOST]);
    ws.terminate();
  });
});

describe('unix socket redirects', () => {
  it("with changeOrigin, the upstream's Location at http://localhost goes to the client's origin and mount path", async () => {
    const upstream = await startSocketUpstream(socketPath(), (_req, res) => {
      res.writeHead(302, { location: 'http://localhost/signed-in?next=%2F' }).end();
    });
    const port = await front({ routes: { [HOST]: `unix:${upstream.path}` }, changeOrigin: true, logger: captureLogs('info').logger }, EXPRESS_VERSIONS[0]![1]);
    const answer = await get(port, `${PREFIX}/login`);
    expect([answer.status, answer.headers.location]).toEqual([302, `http://${HOST}${PREFIX}/signed-in?next=%2F`]);
  });
});

describe('unix socket options', () => {
  const build = (routes: unknown) => () => createProxy({ routes: routes as ProxyOptions['routes'], logger: false });

  it.each([
    ['a relative string path', { [HOST]: 'unix:app.sock' }, 'routes["app.localhost"] must be the absolute path of a unix domain socket, such as "/run/app.sock"; got "app.sock"'],
    ['an empty string path', { [HOST]: 'unix:' }, 'routes["app.localhost"] must be the absolute path of a unix domain socket, such as "/run/app.sock"; got ""'],
    ['a relative socketPath', { [HOST]: { socketPath: './app.sock' } }, 'routes["app.localhost"].socketPath must be the absolute path of a unix domain socket, such as "/run/app.sock"; got "./app.sock"'],
    ['a socketPath that is not a string', { [HOST]: { socketPath: 5 } }, 'routes["app.localhost"].socketPath must be the absolute path of a unix domain socket, such as "/run/app.sock"; got 5'],
    ['both target and socketPath', { [HOST]: { target: 'http://127.0.0.1:1', socketPath: '/run/app.sock' } }, 'routes["app.localhost"] must name its upstream with target or with socketPath, not both'],
    ['a bad entry in a mixed array', { [HOST]: ['unix:/run/a.sock', 'unix:b.sock'] }, 'routes["app.localhost"][1] must be the absolute path of a unix domain socket, such as "/run/app.sock"; got "b.sock"'],
  ])('%s is refused at construction', (_what, routes, message) => {
    expect(build(routes)).toThrow(ProxyOptionsError);
    expect(build(routes)).toThrow(`honest-proxy: ${message}`);
  });

  it('a socket path with spaces, ? and % reaches that very file', async () => {
    const odd = path.join(dir, 'odd name?%41#.sock');
    const upstream = await startSocketUpstream(odd);
    const port = await front({ routes: { [HOST]: `unix:${odd}`, 'object.localhost': { socketPath: odd } }, logger: captureLogs('info').logger });
    expect((await get(port, '/a')).body).toBe('unix /a');
    expect(upstream.seen.map((r) => r.url)).toEqual(['/a']);
  });
});
