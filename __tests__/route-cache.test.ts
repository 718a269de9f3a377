import http from 'node:http';
import net from 'node:net';
import { Registry } from 'prom-client';
import {
  cachedRoutes,
  portHostRoutes,
  ProxyOptionsError,
  UpstreamUnavailableError,
  type CachedRoutesOptions,
  type RouteFunction,
  type Target,
} from '../src/index.ts';
import { compileRoutes } from '../src/routes/table.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { abandonedGet, gate, get, isAnswer, later, openWebSocket, sleep, startFront, startNamedUpstream, waitFor, type Front } from './helpers/route-lookup.ts';

const hostOf = (req: http.IncomingMessage) => String(req.headers.host);

describe.each(EXPRESS_VERSIONS)('route cache (%s)', (_name, express) => {
  let alpha: Awaited<ReturnType<typeof startNamedUpstream>>;
  let beta: Awaited<ReturnType<typeof startNamedUpstream>>;
  const fronts: Front[] = [];
  const { logger, records } = captureLogs('debug');

  beforeAll(async () => {
    alpha = await startNamedUpstream('alpha');
    beta = await startNamedUpstream('beta');
  });
  beforeEach(() => {
    records.length = 0;
  });
  afterAll(async () => {
    await Promise.all(fronts.map(async (front) => (await front.proxy.close({ timeout: 100 }), await front.close())));
    await Promise.all([alpha.close(), beta.close()]);
  });

  /** A cached route to alpha whose lookups wait for `release`; `calls` has the host of each lookup made. */
  function heldLookups() {
    const release = gate();
    const calls: string[] = [];
    const routes = cachedRoutes(
      async (req) => {
        calls.push(hostOf(req));
        await release.promise;
        return alpha.url;
      },
      { key: hostOf },
    );
    return { release, calls, routes };
  }

  async function start(routes: RouteFunction, routeTimeout = 2000): Promise<Front> {
    const front = await startFront(express, { routes, logger, timeouts: { route: routeTimeout } });
    fronts.push(front);
    return front;
  }

  /** A route function over `table` (host -> target) that counts its calls per host. */
  function counted(table: Record<string, Target | undefined>, options: Omit<CachedRoutesOptions, 'key'> = {}) {
    const calls: string[] = [];
    const routes = cachedRoutes(
      async (req) => {
        calls.push(hostOf(req));
        return table[hostOf(req)];
      },
      { key: hostOf, ...options },
    );
    return { routes, calls };
  }

  it('keeps a found route for ttl: one lookup for many requests, then a new one', async () => {
    const { routes, calls } = counted({ 'a.test': alpha.url }, { ttl: 400 });
    const front = await start(routes);
    for (let i = 0; i < 3; i++) expect((await get(front.port, 'a.test')).body).toBe('alpha /');
    expect(calls).toEqual(['a.test']);
    expect(routes.stats()).toEqual({ hits: 2, misses: 1, size: 1 });
    await sleep(450);
    expect((await get(front.port, 'a.test')).body).toBe('alpha /');
    expect(calls).toEqual(['a.test', 'a.test']);
  });

  it('shares one lookup between concurrent requests for a key (single flight)', async () => {
    const { release, calls, routes } = heldLookups();
    const front = await start(routes);
    const answers = later(Promise.all(Array.from({ length: 5 }, () => get(front.port, 'a.test'))));
    await waitFor(() => routes.stats().misses === 5, 2000, 'five waiting requests');
    release.open();
    expect((await answers).map((res) => res.body)).toEqual(Array(5).fill('alpha /'));
    expect(calls).toEqual(['a.test']);
  });

  it('keeps a shared lookup going while one request waits for it, and aborts it once every one left', async () => {
    const release = gate();
    const signals: AbortSignal[] = [];
    const routes = cachedRoutes(
      async (_req, { signal }) => {
        signals.push(signal);
        await release.promise;
        return alpha.url;
      },
      { key: hostOf },
    );
    const front = await start(routes);

    // One leaves, one stays: the lookup goes on for the one that stays.
    const leave = gate();
    const left = abandonedGet(front.port, 'a.test', leave.promise);
    const stays = later(get(front.port, 'a.test'));
    await waitFor(() => routes.stats().misses === 2, 2000, 'two waiting requests');
    leave.open();
    await left;
    await sleep(100);
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
    release.open();
    expect((await stays).body).toBe('alpha /');

    // Both leave: nobody waits any more, so the lookup is told to stop.
    const hang = cachedRoutes((_req, { signal }) => (signals.push(signal), new Promise<never>(() => {})), { key: hostOf });
    const second = await start(hang);
    const bothLeave = gate();
    const gone = [abandonedGet(second.port, 'b.test', bothLeave.promise), abandonedGet(second.port, 'b.test', bothLeave.promise)];
    await waitFor(() => hang.stats().misses === 2, 2000, 'two waiting requests');
    bothLeave.open();
    await Promise.all(gone);
    await waitFor(() => signals[1]!.aborted, 2000, 'the abort');
    expect((signals[1]!.reason as DOMException).name).toBe('AbortError');
    expect(signals).toHaveLength(2);
    // The next request starts a lookup of its own instead of joining the abandoned one.
    const third = get(second.port, 'b.test', '/preview/', 500).catch(() => undefined);
    await waitFor(() => signals.length === 3, 2000, 'a new lookup');
    await third;
  });

  it('times a shared lookup out from its start: a late joiner gets its 504 early, and the next request asks again', async () => {
    const signals: AbortSignal[] = [];
    const routes = cachedRoutes((_req, { signal }) => (signals.push(signal), new Promise<never>(() => {})), { key: hostOf });
    const front = await start(routes, 400);
    const startedAt = performance.now();
    const first = later(get(front.port, 'a.test'));
    await sleep(200);
    const joinedAt = performance.now();
    const late = await get(front.port, 'a.test');
    const lateTook = performance.now() - joinedAt;
    const early = await first;
    expect([early.status, late.status]).toEqual([504, 504]);
    expect(late.headers['proxy-status']).toBe('proxy; error=proxy_internal_error');
    expect(performance.now() - startedAt).toBeLessThan(1500);
    expect(lateTook).toBeLessThan(390);
    expect(signals).toHaveLength(1);
    expect((signals[0]!.reason as DOMException).name).toBe('TimeoutError');
    const timeouts = records.filter((record) => record.code === 'ROUTE_LOOKUP_TIMEOUT');
    expect(timeouts.map((record) => record.level)).toEqual(['warn', 'warn']);
    const waited = timeouts.map((record) => record.waitedMs as number).sort((a, b) => a - b);
    expect(waited[0]).toBeLessThan(390);
    expect(waited[1]).toBeGreaterThanOrEqual(395);
    // Nothing was kept, and the hung lookup is not joined again.
    expect((await get(front.port, 'a.test')).status).toBe(504);
    expect(signals).toHaveLength(2);
  });

  it('keeps "no route" for notFoundTtl, and not at all with 0', async () => {
    const kept = counted({}, { notFoundTtl: 300 });
    const front = await start(kept.routes);
    expect((await get(front.port, 'none.test')).status).toBe(404);
    const again = await get(front.port, 'none.test');
    expect(again.status).toBe(404);
    expect(again.headers['proxy-status']).toBe('proxy; error=destination_not_found');
    expect(kept.calls).toHaveLength(1);
    await sleep(350);
    expect((await get(front.port, 'none.test')).status).toBe(404);
    expect(kept.calls).toHaveLength(2);

    const never = counted({}, { notFoundTtl: 0 });
    const second = await start(never.routes);
    for (let i = 0; i < 3; i++) expect((await get(second.port, 'none.test')).status).toBe(404);
    expect(never.calls).toHaveLength(3);
    expect(never.routes.stats().size).toBe(0);
  });

  it('never keeps an error or a bad target: the next request asks again', async () => {
    const calls: string[] = [];
    const routes = cachedRoutes(
      async (req) => {
        calls.push(hostOf(req));
        if (hostOf(req) === 'stopped.test') throw new UpstreamUnavailableError('sandbox stopped', { retryAfterSeconds: 5 });
        return 'ftp://files.test/';
      },
      { key: hostOf },
    );
    const front = await start(routes);
    for (let i = 0; i < 2; i++) {
      const res = await get(front.port, 'stopped.test');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect((await get(front.port, 'bad.test')).status).toBe(500);
    }
    expect(calls).toEqual(['stopped.test', 'bad.test', 'stopped.test', 'bad.test']);
    expect(routes.stats().size).toBe(0);
  });

  it('holds at most max keys, dropping the least recently used first', async () => {
    const { routes, calls } = counted({ 'a.test': alpha.url, 'b.test': beta.url, 'c.test': alpha.url }, { max: 2 });
    const front = await start(routes);
    for (const host of ['a.test', 'b.test', 'a.test', 'c.test']) expect((await get(front.port, host)).status).toBe(200);
    expect(calls).toEqual(['a.test', 'b.test', 'c.test']);
    expect(routes.stats().size).toBe(2);
    // b was used least recently when c came in.
    await get(front.port, 'a.test');
    expect(calls).toHaveLength(3);
    await get(front.port, 'b.test');
    expect(calls).toEqual(['a.test', 'b.test', 'c.test', 'b.test']);
  });

  it('drops one key with invalidate(key) and every key with clear()', async () => {
    const table: Record<string, Target> = { 'a.test': alpha.url, 'b.test': alpha.url };
    const { routes, calls } = counted(table);
    const front = await start(routes);
    await get(front.port, 'a.test');
    await get(front.port, 'b.test');
    table['a.test'] = beta.url;
    expect((await get(front.port, 'a.test')).body).toBe('alpha /');
    routes.invalidate('a.test');
    expect((await get(front.port, 'a.test')).body).toBe('beta /');
    expect((await get(front.port, 'b.test')).body).toBe('alpha /');
    expect(calls).toEqual(['a.test', 'b.test', 'a.test']);
    routes.clear();
    await get(front.port, 'a.test');
    await get(front.port, 'b.test');
    expect(calls).toEqual(['a.test', 'b.test', 'a.test', 'a.test', 'b.test']);
  });

  it('keeps the answer of a lookup that an invalidation overtook out of the cache', async () => {
    const release = gate();
    const table: Record<string, Target> = { 'a.test': alpha.url };
    const calls: string[] = [];
    const routes = cachedRoutes(
      async (req) => {
        calls.push(hostOf(req));
        const target = table[hostOf(req)];
        await release.promise;
        return target;
      },
      { key: hostOf },
    );
    const front = await start(routes);
    const before = later(get(front.port, 'a.test'));
    await waitFor(() => calls.length === 1, 2000, 'the lookup');
    table['a.test'] = beta.url;
    routes.invalidate('a.test');
    release.open();
    expect((await before).body).toBe('alpha /');
    expect((await get(front.port, 'a.test')).body).toBe('beta /');
    expect(calls).toHaveLength(2);
  });

  it("portHostRoutes' cache: invalidate(id) drops every port of that sandbox, and only of it", async () => {
    const sandboxes: Record<string, string> = { demo: '127.0.0.1', other: '127.0.0.1' };
    const calls: string[] = [];
    const routes = portHostRoutes({
      domain: 'localhost',
      resolve: async (id, port) => {
        calls.push(`${port}-${id}`);
        const address = sandboxes[id];
        return address && `http://${address}:${port}`;
      },
      cache: { ttl: 60_000 },
    });
    const front = await start(routes);
    const hosts = [`${alpha.port}-demo.localhost`, `${beta.port}-demo.localhost`, `${alpha.port}-other.localhost`];
    for (const host of [...hosts, ...hosts]) expect((await get(front.port, host)).status).toBe(200);
    expect(calls).toEqual([`${alpha.port}-demo`, `${beta.port}-demo`, `${alpha.port}-other`]);

    routes.invalidate('DEMO');
    for (const host of hosts) expect((await get(front.port, host)).status).toBe(200);
    expect(calls.slice(3)).toEqual([`${alpha.port}-demo`, `${beta.port}-demo`]);
    // Hosts that name no sandbox port are refused without a lookup, and not kept.
    expect((await get(front.port, '99999-demo.localhost')).status).toBe(404);
    expect((await get(front.port, 'demo.example.test')).status).toBe(404);
    expect(calls).toHaveLength(5);
    expect(routes.stats().size).toBe(3);
  });

  it('serves WebSocket upgrades from the same cache', async () => {
    const { routes, calls } = counted({ 'a.test': alpha.url });
    const front = await start(routes);
    expect((await get(front.port, 'a.test')).status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const opened = await openWebSocket(front.port, 'a.test');
      if (isAnswer(opened)) throw new Error(`refused: ${opened.status}`);
      expect(opened.message).toBe('hello from alpha');
      opened.ws.close();
    }
    expect(calls).toEqual(['a.test']);
    expect(routes.stats()).toMatchObject({ hits: 2, misses: 1 });
  });

  it('shares one lookup between a WebSocket upgrade and a request that wait together', async () => {
    const { release, calls, routes } = heldLookups();
    const front = await start(routes);
    const upgrade = later(openWebSocket(front.port, 'a.test'));
    const request = later(get(front.port, 'a.test'));
    await waitFor(() => routes.stats().misses === 2, 2000, 'two waiting');
    release.open();
    const opened = await upgrade;
    if (isAnswer(opened)) throw new Error(`refused: ${opened.status}`);
    opened.ws.close();
    expect((await request).body).toBe('alpha /');
    expect(calls).toHaveLength(1);
  });

  it('looks up without the cache when key(req) is undefined, and answers 500 when it is not a string', async () => {
    const calls: string[] = [];
    const routes = cachedRoutes(
      (req) => {
        calls.push(hostOf(req));
        return alpha.url;
      },
      { key: (req) => (hostOf(req) === 'nocache.test' ? undefined : hostOf(req) === 'bad.test' ? (42 as unknown as string) : hostOf(req)) },
    );
    const front = await start(routes);
    for (let i = 0; i < 2; i++) expect((await get(front.port, 'nocache.test')).status).toBe(200);
    expect(calls).toEqual(['nocache.test', 'nocache.test']);
    expect((await get(front.port, 'bad.test')).status).toBe(500);
    expect(records.find((record) => record.level === 'error')?.cause).toMatchObject({ message: expect.stringContaining('cachedRoutes.key(req) must return a string') });
  });

  it("works inside a route function of the user's, which hands it its lookup", async () => {
    const { routes: cached, calls } = counted({ 'a.test': alpha.url });
    const front = await start((req, lookup) => (hostOf(req).endsWith('.test') ? cached(req, lookup) : undefined));
    for (let i = 0; i < 2; i++) expect((await get(front.port, 'a.test')).body).toBe('alpha /');
    expect((await get(front.port, 'a.example')).status).toBe(404);
    expect(calls).toEqual(['a.test']);
  });
});

describe('route cache metrics', () => {
  it('reports hits, misses and entries per proxy when metrics is set, read at scrape time', async () => {
    const registry = new Registry();
    const upstream = await startNamedUpstream('app');
    const caches = ['one', 'two'].map(() => cachedRoutes(async () => upstream.url, { key: hostOf }));
    const fronts = await Promise.all(
      caches.map((routes, i) => startFront(EXPRESS_VERSIONS[i]![1], { routes, logger: false, metrics: { registry, name: i === 0 ? 'one' : 'two' } })),
    );
    const plain = await startFront(EXPRESS_VERSIONS[0]![1], { routes: { 'a.test': upstream.url }, logger: false, metrics: { registry, name: 'plain' } });
    try {
      for (let i = 0; i < 3; i++) await get(fronts[0]!.port, 'a.test');
      await get(fronts[1]!.port, 'a.test');
      await get(fronts[1]!.port, 'b.test');
      const text = await registry.metrics();
      expect(text).toContain('honest_proxy_route_cache_hits_total{proxy="one"} 2');
      expect(text).toContain('honest_proxy_route_cache_misses_total{proxy="one"} 1');
      expect(text).toContain('honest_proxy_route_cache_entries{proxy="one"} 1');
      expect(text).toContain('honest_proxy_route_cache_hits_total{proxy="two"} 0');
      expect(text).toContain('honest_proxy_route_cache_misses_total{proxy="two"} 2');
      expect(text).toContain('honest_proxy_route_cache_entries{proxy="two"} 2');
      // A proxy without a cache has no series there.
      expect(text).not.toMatch(/honest_proxy_route_cache_\w+\{proxy="plain"\}/);
      // Counted as they happen: a second scrape sees the later requests.
      await get(fronts[0]!.port, 'a.test');
      expect(await registry.metrics()).toContain('honest_proxy_route_cache_hits_total{proxy="one"} 3');
    } finally {
      for (const front of [...fronts, plain]) {
        await front.proxy.close({ timeout: 100 });
        await front.close();
      }
      await upstream.close();
    }
  });
});

describe('a warm cache costs what a record does', () => {
  it('answers a hit synchronously: no promise for the proxy to await', async () => {
    const routes = cachedRoutes(async () => 'http://127.0.0.1:1', { key: hostOf });
    const resolve = compileRoutes(routes, 1000);
    const req = new http.IncomingMessage(new net.Socket());
    req.headers.host = 'a.test';
    const miss = resolve(req, 'a.test');
    expect(miss).toBeInstanceOf(Promise);
    const route = await miss;
    const hit = resolve(req, 'a.test');
    expect(hit).not.toBeInstanceOf(Promise);
    // The very route object, validated once: no URL parsed again per request.
    expect(hit).toBe(route);

    const record = compileRoutes({ 'a.test': 'http://127.0.0.1:1' });
    expect(record(req, 'a.test')).not.toBeInstanceOf(Promise);
  });

  it('answers a portHostRoutes hit synchronously too', async () => {
    const routes = portHostRoutes({ domain: 'localhost', resolve: async (_id, port) => `http://127.0.0.1:${port}`, cache: {} });
    const resolve = compileRoutes(routes, 1000);
    const req = new http.IncomingMessage(new net.Socket());
    req.headers.host = '3000-demo.localhost';
    const route = await resolve(req, '3000-demo.localhost');
    expect(resolve(req, '3000-demo.localhost')).toBe(route);
  });
});

describe('route cache options', () => {
  const fn: RouteFunction = () => undefined;
  const resolve = () => undefined;

  it.each([
    ['no key', () => cachedRoutes(fn, {} as CachedRoutesOptions), /cachedRoutes\.key must be a function/],
    ['no options', () => cachedRoutes(fn, undefined as unknown as CachedRoutesOptions), /cachedRoutes\(routes, options\): options must be an object/],
    ['routes that are not a function', () => cachedRoutes('http://a' as unknown as RouteFunction, { key: hostOf }), /routes must be a route function/],
    ['a ttl of 0', () => cachedRoutes(fn, { key: hostOf, ttl: 0 }), /cachedRoutes\.ttl must be a whole number of milliseconds from 1/],
    ['a negative notFoundTtl', () => cachedRoutes(fn, { key: hostOf, notFoundTtl: -1 }), /cachedRoutes\.notFoundTtl must be a whole number of milliseconds from 0/],
    ['a fractional notFoundTtl', () => cachedRoutes(fn, { key: hostOf, notFoundTtl: 0.5 }), /cachedRoutes\.notFoundTtl/],
    ['a max of 0', () => cachedRoutes(fn, { key: hostOf, max: 0 }), /cachedRoutes\.max must be a whole number from 1 to 1000000/],
    ['a max too large to allocate', () => cachedRoutes(fn, { key: hostOf, max: 1e9 }), /cachedRoutes\.max/],
    ['a misspelt ttl', () => cachedRoutes(fn, { key: hostOf, tll: 5 } as CachedRoutesOptions), /unknown option "cachedRoutes\.tll"; did you mean "cachedRoutes\.ttl"\?/],
    ['a redis that is not a client', () => cachedRoutes(fn, { key: hostOf, redis: {} as never }), /cachedRoutes\.redis must be a node-redis v5 client/],
    ['an empty channel', () => cachedRoutes(fn, { key: hostOf, channel: '' }), /cachedRoutes\.channel must be a non-empty string/],
    ['cache: true', () => portHostRoutes({ domain: 'localhost', resolve, cache: true as never }), /portHostRoutes: cache must be an object/],
    ['a bad cache max', () => portHostRoutes({ domain: 'localhost', resolve, cache: { max: -1 } }), /portHostRoutes\.cache\.max must be a whole number/],
    ['a misspelt cache option', () => portHostRoutes({ domain: 'localhost', resolve, cache: { notFoundTTL: 5 } as never }), /did you mean "portHostRoutes\.cache\.notFoundTtl"\?/],
    ['a misspelt cache', () => portHostRoutes({ domain: 'localhost', resolve, cahce: {} } as never), /unknown option "portHostRoutes\.cahce"; did you mean "portHostRoutes\.cache"\?/],
  ])('refuses %s with a ProxyOptionsError naming the option', (_case, build, message) => {
    expect(build).toThrow(ProxyOptionsError);
    expect(build).toThrow(message);
  });

  it('refuses a key to invalidate that is not a string', () => {
    const routes = cachedRoutes(fn, { key: hostOf });
    expect(() => routes.invalidate(42 as unknown as string)).toThrow(/invalidate\(key\): key must be a string; got 42/);
  });
});
