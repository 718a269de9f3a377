import http from 'node:http';
import { rateLimit, type Options as ErlOptions, type Store } from 'express-rate-limit';
import request from 'supertest';
import { createProxy, type ProxyOptions, type RateLimitOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { listen, startUpstream, type Upstream } from './helpers/servers.ts';

describe.each(EXPRESS_VERSIONS)('rate limit (%s)', (_name, express) => {
  let upstream: Upstream;
  const apps: ProxyApp[] = [];
  const { logger, records } = captureLogs('info');

  beforeAll(async () => {
    upstream = await startUpstream((_req, res) => res.end('ok'));
  });
  afterAll(async () => {
    await Promise.all([...apps, upstream].map((s) => s.close()));
  });
  beforeEach(() => {
    records.length = 0;
    upstream.seen.length = 0;
  });

  async function start(rateLimit: ProxyOptions['rateLimit']): Promise<ProxyApp> {
    const app = await startProxyApp(express, { routes: { 'a.localhost': upstream.url, 'b.localhost': upstream.url }, rateLimit, logger });
    apps.push(app);
    return app;
  }

  it('answers 429 with Retry-After and RateLimit headers once the limit is spent; the upstream never sees it', async () => {
    const app = await start({ windowMs: 60_000, limit: 2 });
    for (let i = 0; i < 2; i++) {
      const passed = await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost');
      expect(passed.status).toBe(200);
      // Counts ride on our 429s only; an upstream response stays untouched.
      expect(passed.headers['ratelimit']).toBeUndefined();
      expect(passed.headers['ratelimit-policy']).toBeUndefined();
    }
    const limited = await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost');
    expect(limited.status).toBe(429);
    expect(limited.text).toBe('Too Many Requests');
    expect(limited.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(limited.headers['proxy-status']).toBe('proxy; error=http_request_denied');
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(limited.headers['ratelimit']).toMatch(/^limit=2, remaining=0, reset=\d+$/);
    expect(limited.headers['ratelimit-policy']).toBe('2;w=60');
    expect(upstream.seen).toHaveLength(2);

    const info = records.filter((r) => r.level === 'info');
    expect(info).toHaveLength(1);
    // The detail, not the public text: the log keeps what the response leaves out.
    expect(info[0]!.message).toBe('RATE_LIMIT rate limit exceeded');
    expect(info[0]).toMatchObject({ status: 429, code: 'RATE_LIMITED', host: 'a.localhost', key: '127.0.0.1' });
  });

  it('keeps keys apart, and logs a token key only as a hash', async () => {
    const app = await start({ limit: 1, keyGenerator: (req) => String(req.headers['x-api-key']) });
    const call = (key: string) => request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost').set('x-api-key', key);
    expect((await call('token-alpha-secret')).status).toBe(200);
    expect((await call('token-alpha-secret')).status).toBe(429);
    expect((await call('token-beta-secret')).status).toBe(200);
    const logged = JSON.stringify(records);
    expect(logged).not.toContain('token-alpha-secret');
    expect(records.find((r) => r.code === 'RATE_LIMITED')).toMatchObject({ key: expect.stringMatching(/^sha256:[0-9a-f]{16}$/) });
  });

  it('limits per routed host with the per-host recipe', async () => {
    const app = await start({ limit: 1, keyGenerator: (req) => `host:${String(req.headers.host).toLowerCase()}` });
    expect((await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost')).status).toBe(200);
    expect((await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost')).status).toBe(429);
    expect((await request(app.server).get(`${PREFIX}/`).set('Host', 'b.localhost')).status).toBe(200);
  });

  it('does not count what skip excludes', async () => {
    const app = await start({ limit: 1, skip: (req) => req.url === '/healthz' });
    for (let i = 0; i < 3; i++) expect((await request(app.server).get(`${PREFIX}/healthz`).set('Host', 'a.localhost')).status).toBe(200);
    expect((await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost')).status).toBe(200);
    expect((await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost')).status).toBe(429);
  });

  it("renders the 429 in the proxy's error format, with retryAfter in JSON", async () => {
    const app = await startProxyApp(express, { routes: { 'a.localhost': upstream.url }, rateLimit: { limit: 1 }, errorFormat: 'json', logger });
    apps.push(app);
    await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost');
    const limited = await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost');
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual({
      statusCode: 429,
      message: 'Too Many Requests',
      error: 'Too many requests; retry after the time in Retry-After.',
      retryAfter: Number(limited.headers['retry-after']),
    });
  });
});

describe('rateLimit option', () => {
  const routes = { 'a.localhost': 'http://127.0.0.1:1' };
  it.each<[string, unknown, RegExp]>([
    ['not an object', 5, /rateLimit must be false or express-rate-limit options/],
    ['no limit', {}, /rateLimit.limit must be a whole number above 0 or a function/],
    ['a zero limit', { limit: 0 }, /rateLimit.limit must be a whole number above 0/],
    ['an unknown key', { limit: 1, maxRequests: 5 }, /unknown option "rateLimit.maxRequests"; known options are rateLimit.windowMs, rateLimit.limit/],
    ['a near miss', { limit: 1, legacyHeader: true }, /unknown option "rateLimit.legacyHeader"; did you mean "rateLimit.legacyHeaders"\?$/],
    ['a bad window', { limit: 1, windowMs: 0 }, /rateLimit.windowMs must be a whole number of milliseconds/],
    ['a bad key generator', { limit: 1, keyGenerator: 'ip' }, /rateLimit.keyGenerator must be a function/],
    ['a bad store', { limit: 1, store: {} }, /rateLimit.store must be an express-rate-limit Store/],
    ['a bad onStoreError', { limit: 1, onStoreError: 'ignore' }, /rateLimit.onStoreError must be 'allow' or 'deny'/],
  ])('rejects %s', (_case, rateLimit, message) => {
    expect(() => createProxy({ routes, rateLimit } as ProxyOptions)).toThrow(message);
  });
});

describe.each(EXPRESS_VERSIONS)('rate limit, express-rate-limit options passed on (%s)', (_name, express) => {
  let upstream: Upstream;
  const apps: ProxyApp[] = [];
  const { logger, records } = captureLogs('info');

  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      res.statusCode = req.url === '/fail' ? 500 : 200;
      res.end(req.url === '/fail' ? 'upstream failed' : 'ok');
    });
  });
  afterAll(async () => {
    await Promise.all([...apps, upstream].map((s) => s.close()));
  });
  beforeEach(() => {
    records.length = 0;
  });

  async function start(rateLimit: ProxyOptions['rateLimit']): Promise<ProxyApp> {
    const app = await startProxyApp(express, { routes: { 'a.localhost': upstream.url }, rateLimit, logger });
    apps.push(app);
    return app;
  }
  const get = (app: ProxyApp, path: string) => request(app.server).get(`${PREFIX}${path}`).set('Host', 'a.localhost');

  it('skipFailedRequests: an upstream 500 is relayed and not counted; without it, it is', async () => {
    const counting = await start({ limit: 1 });
    expect((await get(counting, '/fail')).status).toBe(500);
    expect((await get(counting, '/')).status).toBe(429);

    const skipping = await start({ limit: 1, skipFailedRequests: true });
    for (let i = 0; i < 3; i++) {
      const failed = await get(skipping, '/fail');
      expect(failed.status).toBe(500);
      expect(failed.text).toBe('upstream failed');
    }
    expect((await get(skipping, '/')).status).toBe(200);
    expect((await get(skipping, '/')).status).toBe(429);
  });

  it('the counts go on req.rateLimit (or requestPropertyName) on every request, as express-rate-limit puts them', async () => {
    // What an error handler behind the proxy (onError: 'next') reads on each refused request.
    for (const [rateLimit, property] of [[{ limit: 2 }, 'rateLimit'], [{ limit: 2, requestPropertyName: 'quota' }, 'quota']] as const) {
      const seen: unknown[] = [];
      const app = express();
      app.use(PREFIX, createProxy({ routes: { 'a.localhost': upstream.url }, rateLimit, logger, onError: 'next' }));
      app.use((err: { status: number }, req: http.IncomingMessage, res: http.ServerResponse, _next: unknown) => {
        const info = (req as unknown as Record<string, { current?: unknown }>)[property];
        seen.push({ ...info, current: info?.current, enumerable: Object.keys(info ?? {}) });
        res.statusCode = err.status;
        res.end();
      });
      const server = http.createServer(app);
      const running = await listen(server);
      apps.push(Object.assign(running, { server }));
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await request(server).get(`${PREFIX}/`).set('Host', 'a.localhost')).status);
      expect(statuses).toEqual([200, 200, 429, 429]);
      const keys = ['limit', 'used', 'remaining', 'resetTime', 'key'];
      expect(seen).toEqual([
        { limit: 2, used: 3, remaining: 0, resetTime: expect.any(Date), key: '127.0.0.1', current: 3, enumerable: keys },
        { limit: 2, used: 4, remaining: 0, resetTime: expect.any(Date), key: '127.0.0.1', current: 4, enumerable: keys },
      ]);
    }
  });

  it('requestPropertyName: the counts go on that property, and the 429 still logs the key', async () => {
    const seen: Array<{ quota: unknown; rateLimit: unknown }> = [];
    const app = await start({
      limit: 1,
      requestPropertyName: 'quota',
      skipSuccessfulRequests: true,
      requestWasSuccessful: (req, res) => {
        seen.push({ quota: (req as unknown as Record<string, unknown>)['quota'], rateLimit: (req as unknown as Record<string, unknown>)['rateLimit'] });
        return res.statusCode < 400;
      },
    });
    expect((await get(app, '/fail')).status).toBe(500);
    expect((await get(app, '/')).status).toBe(429);
    expect(seen[0]).toEqual({ quota: expect.objectContaining({ limit: 1, used: 1, remaining: 0, key: '127.0.0.1' }), rateLimit: undefined });
    expect(records.find((r) => r.code === 'RATE_LIMITED')).toMatchObject({ key: '127.0.0.1' });
  });

  it('ipv6Subnet: the default key groups IPv6 clients by /56, or by the prefix given', async () => {
    const limitFor = async (rateLimit: ProxyOptions['rateLimit']) => {
      const app = await startProxyApp(express, { routes: { 'a.localhost': upstream.url }, rateLimit, trustProxy: 'loopback', logger });
      apps.push(app);
      const statuses: number[] = [];
      // Two clients in one /56 but different /64s.
      for (const client of ['2001:db8:0:1::1', '2001:db8:0:2::1', '2001:db8:0:1::1']) {
        statuses.push((await get(app, '/').set('X-Forwarded-For', client)).status);
      }
      return statuses;
    };
    expect(await limitFor({ limit: 1 })).toEqual([200, 429, 429]);
    expect(await limitFor({ limit: 1, ipv6Subnet: 64 })).toEqual([200, 200, 429]);
    expect(await limitFor({ limit: 1, ipv6Subnet: false })).toEqual([200, 200, 429]);
    expect(await limitFor({ limit: 1, ipv6Subnet: () => 64 })).toEqual([200, 200, 429]);
    expect(await limitFor({ limit: 1, ipv6Subnet: () => 48 })).toEqual([200, 429, 429]);
  });

  it('max is taken as limit, and retryAfter sets Retry-After on the 429', async () => {
    const app = await startProxyApp(express, { routes: { 'a.localhost': upstream.url }, rateLimit: { max: 1, retryAfter: 7 }, errorFormat: 'json', logger });
    apps.push(app);
    expect((await get(app, '/')).status).toBe(200);
    const limited = await get(app, '/');
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('7');
    expect(limited.body).toMatchObject({ statusCode: 429, retryAfter: 7 });
  });
});

/**
 * A store with one reset moment for every app it is shared into, so the
 * proxy's 429 and express-rate-limit's own can be compared header for header
 * (a reset in seconds from now stays the same for the second the requests
 * may take).
 */
function storeResettingAt(reset: { at?: Date }): Store {
  const hits = new Map<string, number>();
  return {
    async increment(key) {
      reset.at ??= new Date(Date.now() + 30_999);
      const totalHits = (hits.get(key) ?? 0) + 1;
      hits.set(key, totalHits);
      return { totalHits, resetTime: reset.at };
    },
    async decrement(key) {
      hits.set(key, (hits.get(key) ?? 1) - 1);
    },
    async resetKey(key) {
      hits.delete(key);
    },
  };
}

const LIMIT_HEADERS = /^(x-)?ratelimit|^retry-after$|^date$/;

function limitHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => LIMIT_HEADERS.test(name)));
}

describe.each(EXPRESS_VERSIONS)('rate limit, standardHeaders and legacyHeaders (%s)', (_name, express) => {
  let upstream: Upstream;
  const running: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    upstream = await startUpstream((_req, res) => res.end('ok'));
  });
  afterAll(async () => {
    await Promise.all([...running, upstream].map((s) => s.close()));
  });

  /** The headers of the second request's 429 (limit 1), from express-rate-limit on a plain app and from the proxy, same options. */
  async function bothAnswers(options: Partial<ErlOptions> & Record<string, unknown>): Promise<{ reference: request.Response; proxied: request.Response; passed: request.Response }> {
    const reset: { at?: Date } = {};
    const plain = express();
    plain.use(rateLimit({ limit: 1, windowMs: 90_000, ...options, store: storeResettingAt(reset) } as Partial<ErlOptions>));
    plain.get('/', (_req, res) => res.send('ok'));
    const reference = await listen(http.createServer(plain));
    const proxy = await startProxyApp(express, {
      routes: { 'a.localhost': upstream.url },
      rateLimit: { limit: 1, windowMs: 90_000, ...options, store: storeResettingAt(reset) } as RateLimitOptions,
      logger: false,
    });
    running.push(reference, proxy);
    await request(reference.url).get('/').expect(200);
    const passed = await request(proxy.server).get(`${PREFIX}/`).set('Host', 'a.localhost').expect(200);
    return {
      reference: await request(reference.url).get('/').expect(429),
      proxied: await request(proxy.server).get(`${PREFIX}/`).set('Host', 'a.localhost').expect(429),
      passed,
    };
  }

  it.each<[string, Record<string, unknown>]>([
    ['draft-8, its default identifier', { standardHeaders: 'draft-8', legacyHeaders: false }],
    ['draft-8, a string identifier, and legacy headers', { standardHeaders: 'draft-8', identifier: 'per-client', legacyHeaders: true }],
    ['draft-8, an async identifier', { standardHeaders: 'draft-8', identifier: async () => 'from-a-function', legacyHeaders: false }],
    ['draft-7', { standardHeaders: 'draft-7', legacyHeaders: false }],
    ['draft-6', { standardHeaders: 'draft-6', legacyHeaders: false }],
    ['true, which is draft-6', { standardHeaders: true, legacyHeaders: false }],
    ['legacy alone', { standardHeaders: false, legacyHeaders: true }],
    ['legacy by its older name headers', { standardHeaders: false, headers: true }],
  ])('%s: the 429 carries what express-rate-limit sends, value for value', async (_case, options) => {
    const { reference, proxied, passed } = await bothAnswers(options);
    const expected = limitHeaders(reference.headers as Record<string, string>);
    const actual = limitHeaders(proxied.headers as Record<string, string>);
    // Date is the moment each was sent; both must have one when X-RateLimit-Reset is there.
    expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
    delete expected['date'];
    delete actual['date'];
    expect(actual).toEqual(expected);
    expect(Object.keys(expected).length).toBeGreaterThan(1);
    // The upstream's own response stays untouched.
    expect(Object.keys(limitHeaders(passed.headers as Record<string, string>)).filter((name) => name !== 'date')).toEqual([]);
  });

  it("draft-8 renders express-rate-limit's format: a quoted policy name, r and t; q, w and a partition key", async () => {
    const { proxied } = await bothAnswers({ standardHeaders: 'draft-8', legacyHeaders: false });
    expect(proxied.headers['ratelimit']).toMatch(/^"1-in-1.5min"; r=0; t=31$/);
    expect(proxied.headers['ratelimit-policy']).toMatch(/^"1-in-1.5min"; q=1; w=90; pk=:[A-Za-z0-9+/]{16}:$/);
  });

  it('standardHeaders: false and no legacy headers leave Retry-After alone', async () => {
    const { proxied } = await bothAnswers({ standardHeaders: false, legacyHeaders: false });
    expect(Object.keys(limitHeaders(proxied.headers as Record<string, string>)).filter((name) => name !== 'date')).toEqual(['retry-after']);
  });
});
