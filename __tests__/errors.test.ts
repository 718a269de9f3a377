import http, { STATUS_CODES } from 'node:http';
import request from 'supertest';
import {
  BadRequestError,
  createProxy,
  GuardUnavailableError,
  InternalProxyError,
  MissingHostError,
  PayloadTooLargeError,
  ProxyConfigurationError,
  ProxyError,
  RateLimitedError,
  ResponseTransformError,
  RouteNotFoundError,
  ShuttingDownError,
  UpstreamGoneError,
  UpstreamProtocolError,
  UpstreamTimeoutError,
  UpstreamUnavailableError,
  UpstreamUnreachableError,
  type ProxyErrorInit,
  type ProxyOptions,
} from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import { rawRequest } from './helpers/raw-http.ts';
import { closedPort, startBlackholePort, startRawServer, startUpstream, type Running, type Upstream } from './helpers/servers.ts';

/** The parts of a proxy error response that never vary by format. */
function expectProxyErrorHeaders(headers: Record<string, string>, status: number, proxyStatus: string): void {
  expect(headers['cache-control']).toBe('no-store');
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['proxy-status']).toBe(`proxy; error=${proxyStatus}`);
  expect(headers['x-powered-by']).toBeUndefined();
  expect(headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(status).toBeGreaterThanOrEqual(400);
}

/** A body must not carry an address, a Node error, a stack or a library name. */
function expectNothingLeaked(text: string, ...secrets: string[]): void {
  for (const secret of ['127.0.0.1', 'ECONN', 'Error:', 'TypeError', ' at ', 'node:', 'httpxy', 'http-proxy', 'express', 'honest', ...secrets]) {
    expect(text).not.toContain(secret);
  }
}

function warnings(records: LogRecord[]): LogRecord[] {
  return records.filter((r) => r.level !== 'debug');
}

describe.each(EXPRESS_VERSIONS)('proxy error responses (%s)', (_name, express) => {
  let upstream: Upstream;
  let refusedPort: number;
  let hanging: Running;
  let garbage: Running;
  let resetter: Running;
  let blackhole: Running;
  let proxy: ProxyApp;
  const { logger, records } = captureLogs('info');

  beforeAll(async () => {
    upstream = await startUpstream((_req, res) => res.end('fine'));
    refusedPort = await closedPort();
    // Accepts and reads, never answers.
    hanging = await startRawServer((socket) => socket.resume());
    // Answers with bytes that are not HTTP.
    garbage = await startRawServer((socket) => socket.once('data', () => socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n')));
    // Accepts, then resets as soon as the request arrives.
    resetter = await startRawServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
    blackhole = await startBlackholePort();

    const routes: Record<string, string> = {
      'ok.localhost': upstream.url,
      'refused.localhost': `http://127.0.0.1:${refusedPort}`,
      'hang.localhost': hanging.url,
      'garbage.localhost': garbage.url,
      'reset.localhost': resetter.url,
      'blackhole.localhost': blackhole.url,
    };
    proxy = await startProxyApp(express, {
      routes: async (req) => {
        const host = req.headers.host?.split(':')[0];
        if (host === 'stopped.localhost') throw new UpstreamUnavailableError('sandbox stopped', { retryAfterSeconds: 30 });
        if (host === 'deleted.localhost') throw new UpstreamGoneError('sandbox deleted');
        if (host === 'broken.localhost') throw new Error('control plane at 10.1.2.3 said: secret-token-xyz');
        if (host === 'bad-header.localhost') throw new UpstreamUnavailableError('stopped', { headers: { 'x-note': 'line\r\nbreak' } });
        return host === undefined ? undefined : routes[host];
      },
      logger,
      timeouts: { connect: 300, response: 300 },
    });
  });

  afterAll(async () => {
    await proxy.close();
    await Promise.all([upstream, hanging, garbage, resetter, blackhole].map((s) => s.close()));
  });

  beforeEach(() => {
    records.length = 0;
  });

  async function get(host: string): Promise<request.Response> {
    return request(proxy.server).get(`${PREFIX}/some/path?token=abc`).set('Host', host);
  }

  it('400 Bad Request when an HTTP/1.0 request has no Host, with nothing logged above debug', async () => {
    const res = await rawRequest(proxy.port, `GET ${PREFIX}/x HTTP/1.0\r\n\r\n`);
    expect(res.status).toBe(400);
    expect(res.body).toBe('Bad Request');
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.headers['content-length']).toBe('11');
    expectProxyErrorHeaders(res.headers, res.status, 'http_request_error');
    expect(warnings(records)).toEqual([]);
  });

  it('400 Bad Request for a Host header that is not a host name', async () => {
    const res = await rawRequest(proxy.port, `GET ${PREFIX}/x HTTP/1.1\r\nHost: bad host!\r\nConnection: close\r\n\r\n`);
    expect(res.status).toBe(400);
    expect(res.body).toBe('Bad Request');
    expect(res.body).not.toContain('bad host');
  });

  it('404 Not Found for a host with no route, told apart from an app 404 by Proxy-Status', async () => {
    const res = await get('nobody.localhost');
    expect(res.status).toBe(404);
    expect(res.text).toBe('Not Found');
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expectProxyErrorHeaders(res.headers, res.status, 'destination_not_found');
    expectNothingLeaked(res.text, 'nobody');
    expect(warnings(records)).toEqual([]);
  });

  it('502 Bad Gateway for a refused connection (never 504), logged at warn with host and upstream', async () => {
    const res = await get('refused.localhost');
    expect(res.status).toBe(502);
    expect(res.text).toBe('Bad Gateway');
    expectProxyErrorHeaders(res.headers, res.status, 'connection_refused');
    expectNothingLeaked(res.text + JSON.stringify(res.headers), String(refusedPort));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      level: 'warn',
      status: 502,
      code: 'UPSTREAM_UNREACHABLE',
      proxyStatus: 'connection_refused',
      method: 'GET',
      host: 'refused.localhost',
      path: `${PREFIX}/some/path`,
      upstream: `http://127.0.0.1:${refusedPort}`,
      requestId: res.headers['x-request-id'],
      cause: { code: 'ECONNREFUSED' },
    });
  });

  it('502 for an upstream that resets the connection before answering', async () => {
    const res = await get('reset.localhost');
    expect(res.status).toBe(502);
    expect(res.text).toBe('Bad Gateway');
    expectProxyErrorHeaders(res.headers, res.status, 'connection_terminated');
    expect(records[0]).toMatchObject({ level: 'warn', code: 'UPSTREAM_UNREACHABLE', upstream: resetter.url });
  });

  it('502 for an upstream that answers with something that is not HTTP', async () => {
    const res = await get('garbage.localhost');
    expect(res.status).toBe(502);
    expect(res.text).toBe('Bad Gateway');
    expectProxyErrorHeaders(res.headers, res.status, 'http_protocol_error');
    expectNothingLeaked(res.text + JSON.stringify(res.headers), 'SSH', 'HPE_');
    expect(records[0]).toMatchObject({ level: 'warn', status: 502, host: 'garbage.localhost', upstream: garbage.url });
  });

  it('504 Gateway Timeout when no response headers arrive in time (not a 502 reset)', async () => {
    const res = await get('hang.localhost');
    expect(res.status).toBe(504);
    expect(res.text).toBe('Gateway Timeout');
    expectProxyErrorHeaders(res.headers, res.status, 'http_response_timeout');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 'warn', status: 504, code: 'UPSTREAM_TIMEOUT', host: 'hang.localhost', upstream: hanging.url });
  });

  it('504 Gateway Timeout when the TCP connection cannot be made in time', async () => {
    const res = await get('blackhole.localhost');
    expect(res.status).toBe(504);
    expect(res.text).toBe('Gateway Timeout');
    expectProxyErrorHeaders(res.headers, res.status, 'connection_timeout');
    expect(records[0]).toMatchObject({ level: 'warn', status: 504, code: 'UPSTREAM_TIMEOUT', proxyStatus: 'connection_timeout' });
  });

  it("503 with Retry-After when the resolver throws UpstreamUnavailableError", async () => {
    const res = await get('stopped.localhost');
    expect(res.status).toBe(503);
    expect(res.text).toBe('Service Unavailable');
    expect(res.headers['retry-after']).toBe('30');
    expectProxyErrorHeaders(res.headers, res.status, 'destination_unavailable');
  });

  it('410 Gone when the resolver throws UpstreamGoneError', async () => {
    const res = await get('deleted.localhost');
    expect(res.status).toBe(410);
    expect(res.text).toBe('Gone');
  });

  it('500 when the resolver throws something else; the cause is logged at error, never shown', async () => {
    const res = await get('broken.localhost');
    expect(res.status).toBe(500);
    expect(res.text).toBe('Internal Server Error');
    expectProxyErrorHeaders(res.headers, res.status, 'proxy_internal_error');
    expectNothingLeaked(res.text + JSON.stringify(res.headers), '10.1.2.3', 'secret-token-xyz');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 'error', status: 500, code: 'INTERNAL_PROXY_ERROR', host: 'broken.localhost' });
    const cause = records[0]!.cause as { message: string; stack: string };
    expect(cause.message).toContain('secret-token-xyz');
    expect(cause.stack).toContain('errors.test.ts');
  });

  it('cuts the connection and logs at error when the error response itself cannot be written', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get({ port: proxy.port, host: '127.0.0.1', path: `${PREFIX}/`, headers: { host: 'bad-header.localhost' } }, (res) => {
        res.resume();
        resolve(`answered ${res.statusCode}`);
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`cut: ${err.code}`));
    });
    expect(outcome).toBe('cut: ECONNRESET');
    expect(records.find((r) => r.message === 'could not write the error response')).toMatchObject({ level: 'error', host: 'bad-header.localhost' });
  });

  it('echoes a sane client request id on error responses', async () => {
    const res = await request(proxy.server).get(`${PREFIX}/`).set('Host', 'nobody.localhost').set('X-Request-ID', 'req_42');
    expect(res.headers['x-request-id']).toBe('req_42');
  });

  it('sends headers but no body for HEAD', async () => {
    const res = await request(proxy.server).head(`${PREFIX}/`).set('Host', 'refused.localhost');
    expect(res.status).toBe(502);
    expect(res.headers['content-length']).toBe('11');
    expect(res.text ?? '').toBe('');
  });
});

describe.each(EXPRESS_VERSIONS)('error formats and hand-off (%s)', (_name, express) => {
  let refusedPort: number;
  const apps: ProxyApp[] = [];
  const { logger } = captureLogs();

  beforeAll(async () => {
    refusedPort = await closedPort();
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  async function start(options: Omit<ProxyOptions, 'routes' | 'logger'>): Promise<ProxyApp> {
    const app = await startProxyApp(express, { routes: { 'refused.localhost': `http://127.0.0.1:${refusedPort}` }, logger, ...options });
    apps.push(app);
    return app;
  }

  it("errorFormat 'json' sends seed 001's shape with a fixed description", async () => {
    const app = await start({ errorFormat: 'json' });
    const res = await request(app.server).get(`${PREFIX}/`).set('Host', 'refused.localhost');
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.body).toEqual({
      statusCode: 502,
      message: 'Bad Gateway',
      error: 'The upstream server could not be reached.',
    });
    expectNothingLeaked(res.text, String(refusedPort));
  });

  it('a renderer function shapes the body; one that throws falls back to text', async () => {
    const custom = await start({
      errorFormat: (error) => ({ contentType: 'text/html; charset=utf-8', body: `<h1>${error.statusCode} ${error.code}</h1>` }),
    });
    const res = await request(custom.server).get(`${PREFIX}/`).set('Host', 'nobody.localhost');
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.text).toBe('<h1>404 ROUTE_NOT_FOUND</h1>');

    const throwing = await start({
      errorFormat: () => {
        throw new Error('renderer bug');
      },
    });
    const fallback = await request(throwing.server).get(`${PREFIX}/`).set('Host', 'nobody.localhost');
    expect(fallback.status).toBe(404);
    expect(fallback.text).toBe('Not Found');

    // A content type Node would refuse must not crash the process from inside an event handler.
    const injecting = await start({ errorFormat: () => ({ contentType: 'text/html\r\nSet-Cookie: x=1', body: '<p>hi</p>' }) });
    const safe = await request(injecting.server).get(`${PREFIX}/`).set('Host', 'refused.localhost');
    expect(safe.status).toBe(502);
    expect(safe.text).toBe('Bad Gateway');
    expect(safe.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(safe.headers['set-cookie']).toBeUndefined();
  });

  it('proxyStatus names the proxy, and false leaves the header out', async () => {
    const named = await start({ proxyStatus: 'edge-1' });
    const res = await request(named.server).get(`${PREFIX}/`).set('Host', 'refused.localhost');
    expect(res.headers['proxy-status']).toBe('edge-1; error=connection_refused');

    const off = await start({ proxyStatus: false, requestIdHeader: false });
    const quiet = await request(off.server).get(`${PREFIX}/`).set('Host', 'refused.localhost');
    expect(quiet.status).toBe(502);
    expect(quiet.headers['proxy-status']).toBeUndefined();
    expect(quiet.headers['x-request-id']).toBeUndefined();
  });

  it("onError 'next' hands the typed ProxyError to Express's error handler", async () => {
    const app = express();
    const caught: unknown[] = [];
    app.use(PREFIX, createProxy({ routes: { 'refused.localhost': `http://127.0.0.1:${refusedPort}` }, logger, onError: 'next' }));
    app.use((err: unknown, _req: unknown, res: http.ServerResponse, _next: unknown) => {
      caught.push(err);
      res.statusCode = 599;
      res.end('handled by the app');
    });
    const server = http.createServer(app);
    const res = await request(server).get(`${PREFIX}/`).set('Host', 'refused.localhost');
    expect(res.status).toBe(599);
    expect(res.text).toBe('handled by the app');
    expect(caught).toHaveLength(1);
    expect(caught[0]).toBeInstanceOf(ProxyError);
    expect(caught[0]).toMatchObject({ statusCode: 502, code: 'UPSTREAM_UNREACHABLE', proxyStatus: 'connection_refused' });
  });
});

describe('a failure after the response started', () => {
  it.each(EXPRESS_VERSIONS)('destroys the client connection instead of ending the body cleanly (%s)', async (_name, express) => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('x'.repeat(100));
      setTimeout(() => res.socket!.destroy(), 50);
    });
    const { logger, records } = captureLogs('info');
    const proxy = await startProxyApp(express, { routes: { 'ok.localhost': upstream.url }, logger });
    try {
      const outcome = await new Promise<{ status?: number; received: number; complete: boolean; error?: string }>((resolve) => {
        let received = 0;
        const req = http.get({ port: proxy.port, host: '127.0.0.1', path: `${PREFIX}/`, headers: { host: 'ok.localhost' } }, (res) => {
          res.on('data', (chunk: Buffer) => (received += chunk.length));
          res.on('end', () => resolve({ status: res.statusCode, received, complete: res.complete }));
          res.on('error', (err) => resolve({ status: res.statusCode, received, complete: res.complete, error: err.message }));
        });
        req.on('error', (err) => resolve({ received, complete: false, error: err.message }));
      });
      expect(outcome.status).toBe(200);
      expect(outcome.received).toBe(100);
      expect(outcome.complete).toBe(false);
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ level: 'warn', status: 502, proxyStatus: 'connection_terminated', afterResponseStarted: true, upstream: upstream.url });
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });
});

it('ProxyError subclasses carry status, code and Proxy-Status type', () => {
  const error = new InternalProxyError('x', { cause: new Error('y') });
  expect(error).toBeInstanceOf(ProxyError);
  expect(error).toBeInstanceOf(Error);
  expect(error).toMatchObject({ statusCode: 500, code: 'INTERNAL_PROXY_ERROR', proxyStatus: 'proxy_internal_error', statusText: 'Internal Server Error' });
  expect((error.cause as Error).message).toBe('y');
  expect(error.name).toBe('InternalProxyError');
});

describe('message is the public status text, detail the internal sentence', () => {
  type Constructor = new (detail?: string, init?: ProxyErrorInit) => ProxyError;
  // Every class that takes a sentence; MissingHostError (which does not) is below.
  const CLASSES: Array<[string, Constructor, number, string]> = [
    ['BadRequestError', BadRequestError, 400, 'bad request'],
    ['RouteNotFoundError', RouteNotFoundError, 404, 'no route for host'],
    ['PayloadTooLargeError', PayloadTooLargeError, 413, 'request body over the limit'],
    ['RateLimitedError', RateLimitedError, 429, 'rate limit exceeded'],
    ['UpstreamUnreachableError', UpstreamUnreachableError, 502, 'upstream unreachable'],
    ['UpstreamTimeoutError', UpstreamTimeoutError, 504, 'upstream timed out'],
    ['UpstreamProtocolError', UpstreamProtocolError, 502, 'invalid upstream response'],
    ['UpstreamUnavailableError', UpstreamUnavailableError, 503, 'upstream unavailable'],
    ['UpstreamGoneError', UpstreamGoneError, 410, 'upstream gone'],
    ['GuardUnavailableError', GuardUnavailableError, 503, 'guard unavailable'],
    ['ResponseTransformError', ResponseTransformError, 502, 'response transform failed'],
    ['ProxyConfigurationError', ProxyConfigurationError, 500, 'proxy misconfigured'],
    ['ShuttingDownError', ShuttingDownError, 503, 'proxy shutting down'],
    ['InternalProxyError', InternalProxyError, 500, 'internal proxy error'],
  ];
  const SECRETS = /10\.9\.8\.7|5432|ECONNREFUSED|s3cr3t|said no/;

  it.each(CLASSES)('%s: message === statusText; the sentence is detail; stack and String() hold neither it nor the cause', (name, Class, status, defaultDetail) => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 10.9.8.7:5432 token=s3cr3t'), { code: 'ECONNREFUSED' });
    const error = new Class('upstream 10.9.8.7:5432 said no', { cause });
    expect(error.name).toBe(name);
    expect(error.statusCode).toBe(status);
    expect(error.message).toBe(STATUS_CODES[status]);
    expect(error.message).toBe(error.statusText);
    expect(error.detail).toBe('upstream 10.9.8.7:5432 said no');
    expect(error.cause).toBe(cause);
    // No frames are captured: the stack is the header line alone.
    expect(error.stack).toBe(`${name}: ${STATUS_CODES[status]}`);
    expect(String(error)).toBe(`${name}: ${STATUS_CODES[status]}`);
    expect(`${error.stack} ${error.message} ${String(error)}`).not.toMatch(SECRETS);
    // Nor does an app that serializes the error send them (detail and cause are not enumerable).
    expect(JSON.stringify(error)).not.toMatch(SECRETS);

    const plain = new Class();
    expect(plain.message).toBe(plain.statusText);
    expect(plain.detail).toBe(defaultDetail);
  });

  it('MissingHostError: message Bad Request, its fixed sentence as detail, a string cause kept out of the stack', () => {
    const error = new MissingHostError({ cause: 'invalid Host header 10.9.8.7' });
    expect(error.message).toBe('Bad Request');
    expect(error.message).toBe(error.statusText);
    expect(error.detail).toBe('request has no Host header');
    expect(error.cause).toBe('invalid Host header 10.9.8.7');
    expect(error.stack).toBe('MissingHostError: Bad Request');
  });

  it("assigning message replaces it as on any Error, and leaves detail alone", () => {
    const error = new RateLimitedError('key 10.9.8.7 over 100/min');
    error.message = `proxy: ${error.message}`;
    expect(error.message).toBe('proxy: Too Many Requests');
    expect(error.detail).toBe('key 10.9.8.7 over 100/min');
  });
});
