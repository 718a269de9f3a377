import request from 'supertest';
import { createProxy, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { startUpstream, type Upstream } from './helpers/servers.ts';

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
    expect(info[0]!.message).toMatch(/^RATE_LIMIT /);
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
    ['an unknown key', { limit: 1, max: 5 }, /unknown option rateLimit.max; known are rateLimit.windowMs/],
    ['a bad window', { limit: 1, windowMs: 0 }, /rateLimit.windowMs must be a whole number of milliseconds/],
    ['a bad key generator', { limit: 1, keyGenerator: 'ip' }, /rateLimit.keyGenerator must be a function/],
    ['a bad store', { limit: 1, store: {} }, /rateLimit.store must be an express-rate-limit Store/],
    ['a bad onStoreError', { limit: 1, onStoreError: 'ignore' }, /rateLimit.onStoreError must be 'allow' or 'deny'/],
  ])('rejects %s', (_case, rateLimit, message) => {
    expect(() => createProxy({ routes, rateLimit } as ProxyOptions)).toThrow(message);
  });
});
