import request from 'supertest';
import { portHostRoutes, RouteNotFoundError } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { startUpstream, type Upstream } from './helpers/servers.ts';

describe.each(EXPRESS_VERSIONS)('route tables (%s)', (_name, express) => {
  let alpha: Upstream;
  let beta: Upstream;
  const apps: ProxyApp[] = [];
  const { logger } = captureLogs();

  beforeAll(async () => {
    alpha = await startUpstream((req, res) => res.end(`alpha ${req.url}`));
    beta = await startUpstream((req, res) => res.end(`beta ${req.url}`));
  });
  afterAll(async () => {
    await Promise.all([...apps, alpha, beta].map((s) => s.close()));
  });

  async function start(routes: Parameters<typeof startProxyApp>[1]['routes']): Promise<ProxyApp> {
    const app = await startProxyApp(express, { routes, logger });
    apps.push(app);
    return app;
  }

  it('matches record hosts case-insensitively, ignoring port and trailing dot', async () => {
    const app = await start({ 'Alpha.Example.test': alpha.url, 'beta.example.test.': `${beta.url}/base` });
    for (const host of ['alpha.example.test', 'ALPHA.EXAMPLE.TEST:8080', 'alpha.example.test.']) {
      const res = await request(app.server).get(`${PREFIX}/p?q=1`).set('Host', host);
      expect(res.status).toBe(200);
      expect(res.text).toBe('alpha /p?q=1');
    }
    const res = await request(app.server).get(`${PREFIX}/p`).set('Host', 'beta.example.test');
    expect(res.text).toBe('beta /base/p');
    const miss = await request(app.server).get(`${PREFIX}/p`).set('Host', 'sub.alpha.example.test');
    expect(miss.status).toBe(404);
    expect(miss.headers['proxy-status']).toBe('proxy; error=destination_not_found');
  });

  it('calls a route function per request; undefined is a 404 and a thrown RouteNotFoundError too', async () => {
    const app = await start(async (req) => {
      if (req.headers['x-tenant'] === 'a') return alpha.url;
      if (req.headers['x-tenant'] === 'b') return { target: new URL(beta.url) };
      if (req.headers['x-tenant'] === 'gone') throw new RouteNotFoundError('tenant deleted');
      return undefined;
    });
    expect((await request(app.server).get(`${PREFIX}/x`).set('Host', 'any.test').set('x-tenant', 'a')).text).toBe('alpha /x');
    expect((await request(app.server).get(`${PREFIX}/x`).set('Host', 'any.test').set('x-tenant', 'b')).text).toBe('beta /x');
    expect((await request(app.server).get(`${PREFIX}/x`).set('Host', 'any.test')).status).toBe(404);
    expect((await request(app.server).get(`${PREFIX}/x`).set('Host', 'any.test').set('x-tenant', 'gone')).status).toBe(404);
  });

  it('answers 500 when a route function returns something that is not a target', async () => {
    const app = await start(() => 'ftp://files.test/' as string);
    const res = await request(app.server).get(`${PREFIX}/x`).set('Host', 'any.test');
    expect(res.status).toBe(500);
    expect(res.text).toBe('Internal Server Error');
  });

  describe('portHostRoutes', () => {
    let app: ProxyApp;
    const calls: Array<[string, number]> = [];

    beforeAll(async () => {
      app = await start(
        portHostRoutes({
          domain: 'localhost',
          resolve: (id, port) => {
            calls.push([id, port]);
            if (id === 'demo' && port === alpha.port) return alpha.url;
            if (id === 'my-app' && port === beta.port) return beta.url;
            return undefined;
          },
        }),
      );
    });
    beforeEach(() => {
      calls.length = 0;
    });

    it('routes {port}-{id}.{domain} to what resolve returns', async () => {
      const res = await request(app.server).get(`${PREFIX}/page`).set('Host', `${alpha.port}-demo.localhost`);
      expect(res.text).toBe('alpha /page');
      const hyphenated = await request(app.server).get(`${PREFIX}/page`).set('Host', `${beta.port}-My-App.LOCALHOST:8080`);
      expect(hyphenated.text).toBe('beta /page');
      expect(calls).toEqual([
        ['demo', alpha.port],
        ['my-app', beta.port],
      ]);
    });

    it.each([
      ['a non-numeric port', 'abc-demo.localhost'],
      ['a port above 65535', '70000-demo.localhost'],
      ['port 0', '0-demo.localhost'],
      ['a port with a leading zero', '03000-demo.localhost'],
      ['no id', '3000-.localhost'],
      ['another domain', '3000-demo.example.test'],
      ['a nested label', 'x.3000-demo.localhost'],
      ['the bare domain', 'localhost'],
    ])('404s %s without calling resolve', async (_case, host) => {
      const res = await request(app.server).get(`${PREFIX}/`).set('Host', host);
      expect(res.status).toBe(404);
      expect(res.text).toBe('Not Found');
      expect(calls).toEqual([]);
    });

    it('404s when resolve knows no such sandbox', async () => {
      const res = await request(app.server).get(`${PREFIX}/`).set('Host', `${alpha.port}-nobody.localhost`);
      expect(res.status).toBe(404);
      expect(calls).toEqual([['nobody', alpha.port]]);
    });
  });
});
