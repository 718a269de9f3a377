import http from 'node:http';
import express5 from 'express';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, type HonestProxy, type ProxyOptions, type TrustProxy } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX } from './helpers/apps.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import { send } from './helpers/real-app.ts';
import { listen, type Running } from './helpers/servers.ts';

// The `trustProxy` forms Express knows besides addresses (a function, a hop
// count, true), each from one client behind one more proxy: the peer is this
// machine (127.0.0.1), which forwards "client, intermediate". What the
// upstream gets in X-Forwarded-For, and what the rate limit keys on, with
// the proxy on a plain node:http server and inside Express.

const HOST = 'app.localhost';
const CLIENT = '203.0.113.7';
const INTERMEDIATE = '198.51.100.2';
const CHAIN = `${CLIENT}, ${INTERMEDIATE}`;
const APPENDED = `${CHAIN}, 127.0.0.1`;

interface Case {
  name: string;
  trust: () => TrustProxy;
  /** What the upstream gets in X-Forwarded-For. */
  forwardedFor: string;
  /** The address the rate limit counts the request against. */
  key: string;
}

const CASES: Case[] = [
  // Hop 0 is the peer (this machine), hop 1 the last address in X-Forwarded-For.
  { name: 'hop count 1', trust: () => 1, forwardedFor: APPENDED, key: INTERMEDIATE },
  { name: 'hop count 2', trust: () => 2, forwardedFor: APPENDED, key: CLIENT },
  { name: 'hop count 0 (nobody)', trust: () => 0, forwardedFor: '127.0.0.1', key: '127.0.0.1' },
  { name: 'true', trust: () => true, forwardedFor: APPENDED, key: CLIENT },
  { name: 'a function trusting loopback and the intermediate', trust: () => (address) => address === '127.0.0.1' || address === INTERMEDIATE, forwardedFor: APPENDED, key: CLIENT },
  { name: 'a function trusting hop 0 only', trust: () => (_address, hop) => hop === 0, forwardedFor: APPENDED, key: INTERMEDIATE },
  { name: 'a function trusting nobody', trust: () => () => false, forwardedFor: '127.0.0.1', key: '127.0.0.1' },
];

interface Seen {
  url: string;
  headers: http.IncomingHttpHeaders;
}

let upstream: Running & { seen: Seen[]; upgrades: Seen[] };
const open: Array<{ close(): Promise<void> }> = [];

beforeAll(async () => {
  const seen: Seen[] = [];
  const upgrades: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    res.end('ok');
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    upgrades.push({ url: req.url!, headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => ws.close(1000));
  });
  const running = await listen(server);
  upstream = Object.assign(running, { seen, upgrades });
});
afterAll(async () => {
  await upstream.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
  upstream.upgrades.length = 0;
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((server) => server.close()));
});

function options(trustProxy: TrustProxy | undefined, logger: ProxyOptions['logger']): ProxyOptions {
  return { routes: { [HOST]: upstream.url }, rateLimit: { limit: 1, windowMs: 60_000 }, logger, ...(trustProxy === undefined ? {} : { trustProxy }) };
}

function track(proxy: HonestProxy, running: Running): Running {
  open.push({
    close: async () => {
      await proxy.close({ timeout: 200 });
      await running.close();
    },
  });
  return running;
}

/**
 * Two requests from the same client through the same chain: the first reaches
 * the upstream, the second is refused with 429, whose log record names the key.
 */
async function twice(port: number, path: string, records: LogRecord[]): Promise<{ statuses: number[]; forwardedFor: unknown; key: unknown }> {
  const statuses: number[] = [];
  for (let i = 0; i < 2; i++) statuses.push((await send(port, { path, headers: { host: HOST, 'x-forwarded-for': CHAIN } })).status);
  expect(upstream.seen).toHaveLength(1);
  const limited = records.filter((record) => record.code === 'RATE_LIMITED');
  expect(limited).toHaveLength(1);
  return { statuses, forwardedFor: upstream.seen[0]!.headers['x-forwarded-for'], key: limited[0]!.key };
}

describe('trustProxy on a plain node:http server (no Express)', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const { logger, records } = captureLogs('debug');
    const proxy = createProxy(options(c.trust(), logger));
    const running = track(proxy, await listen(http.createServer(proxy)));
    const result = await twice(running.port, '/t', records);
    expect(result).toEqual({ statuses: [200, 429], forwardedFor: c.forwardedFor, key: c.key });
    expect(upstream.seen[0]!.url).toBe('/t');
  });

  it('without the option nobody is trusted: the forged chain is dropped and the peer is the key', async () => {
    const { logger, records } = captureLogs('debug');
    const proxy = createProxy(options(undefined, logger));
    const running = track(proxy, await listen(http.createServer(proxy)));
    expect(await twice(running.port, '/t', records)).toEqual({ statuses: [200, 429], forwardedFor: '127.0.0.1', key: '127.0.0.1' });
  });

  it('a function is asked with hops counted from the peer: 0 for this machine, 1 for the nearest forwarded address', async () => {
    const asked = new Set<string>();
    const { logger } = captureLogs('debug');
    const proxy = createProxy(
      options((address, hop) => {
        asked.add(`${hop} ${address}`);
        return address !== CLIENT;
      }, logger),
    );
    const running = track(proxy, await listen(http.createServer(proxy)));
    await send(running.port, { path: '/t', headers: { host: HOST, 'x-forwarded-for': CHAIN } });
    expect(upstream.seen[0]!.headers['x-forwarded-for']).toBe(APPENDED);
    // proxy-addr stops before the farthest address: it is the answer whatever the function says.
    expect([...asked].sort()).toEqual(['0 127.0.0.1', `1 ${INTERMEDIATE}`]);
  });

  it('a WebSocket upgrade taken by proxy.upgrade uses the same rule: hop count 2 appends to the chain and keys on the client', async () => {
    const { logger, records } = captureLogs('debug');
    const proxy = createProxy(options(2, logger));
    const server = http.createServer(proxy);
    server.on('upgrade', proxy.upgrade);
    const running = track(proxy, await listen(server));
    const outcomes: string[] = [];
    for (let i = 0; i < 2; i++) {
      outcomes.push(
        await new Promise<string>((resolve) => {
          const ws = new WebSocket(`ws://127.0.0.1:${running.port}/ws`, { headers: { host: HOST, 'x-forwarded-for': CHAIN } });
          ws.once('open', () => {
            ws.close();
            resolve('open');
          });
          ws.once('unexpected-response', (_req, res) => {
            res.resume();
            resolve(String(res.statusCode));
          });
          ws.once('error', (err) => resolve(`error: ${err.message}`));
        }),
      );
    }
    expect(outcomes).toEqual(['open', '429']);
    expect(upstream.upgrades).toHaveLength(1);
    expect(upstream.upgrades[0]!.headers['x-forwarded-for']).toBe(APPENDED);
    expect(records.filter((record) => record.code === 'RATE_LIMITED').map((record) => record.key)).toEqual([CLIENT]);
  });
});

describe.each(EXPRESS_VERSIONS)('trustProxy inside Express (%s)', (_name, express) => {
  async function startApp(proxyTrust: TrustProxy | undefined, appTrust: unknown): Promise<{ running: Running; records: LogRecord[] }> {
    const { logger, records } = captureLogs('debug');
    const proxy = createProxy(options(proxyTrust, logger));
    const app = (express as typeof express5)();
    app.set('trust proxy', appTrust);
    app.use(PREFIX, proxy);
    const running = track(proxy, await listen(http.createServer(app)));
    return { running, records };
  }

  it.each(CASES.map((c) => [c.name, c] as const))('the option, %s, decides over the app setting (false)', async (_name, c) => {
    const { running, records } = await startApp(c.trust(), false);
    const result = await twice(running.port, `${PREFIX}/t`, records);
    expect(result).toEqual({ statuses: [200, 429], forwardedFor: c.forwardedFor, key: c.key });
    expect(upstream.seen[0]!.url).toBe('/t');
    // The option is the rule: express-rate-limit is not told the app trusts nobody and then warned about X-Forwarded-For.
    expect(records.filter((record) => record.level === 'error')).toEqual([]);
  });

  it.each(CASES.map((c) => [c.name, c] as const))("without the option, the app's own 'trust proxy' %s decides", async (_name, c) => {
    const { running, records } = await startApp(undefined, c.trust());
    const result = await twice(running.port, `${PREFIX}/t`, records);
    expect(result).toEqual({ statuses: [200, 429], forwardedFor: c.forwardedFor, key: c.key });
  });

  it("the option trusting nobody overrides an app that trusts everyone ('trust proxy' true)", async () => {
    const { running, records } = await startApp(false, true);
    expect(await twice(running.port, `${PREFIX}/t`, records)).toEqual({ statuses: [200, 429], forwardedFor: '127.0.0.1', key: '127.0.0.1' });
    // No ERR_ERL_PERMISSIVE_TRUST_PROXY: the app's `true` is not the rule in use.
    expect(records.filter((record) => record.level === 'error')).toEqual([]);
  });
});
