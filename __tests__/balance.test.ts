import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, ProxyOptionsError, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { gate, waitFor } from './helpers/route-lookup.ts';
import { listen, type Running } from './helpers/servers.ts';

const HOST = 'app.test';

/** An upstream that answers every request with its own name, and echoes WebSocket messages prefixed with it. */
interface NamedUpstream extends Running {
  name: string;
  /** Held requests (`/hold`) wait for this gate. */
  release(): void;
  held: number;
  /** Start listening again on the same port after close(). */
  reopen(): Promise<void>;
}

async function startNamed(name: string, port = 0): Promise<NamedUpstream> {
  let hold = gate();
  const upstream = { name, held: 0 } as NamedUpstream;
  const server = http.createServer((req, res) => {
    if (req.url === '/hold') {
      upstream.held++;
      void hold.promise.then(() => res.end(name));
      return;
    }
    res.end(name);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(`${name}:${String(data)}`)));
  upstream.release = () => {
    hold.open();
    hold = gate();
  };
  const open = async (onPort: number) => {
    const sockets = new Set<import('node:net').Socket>();
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(onPort, '127.0.0.1', resolve));
    const bound = (server.address() as AddressInfo).port;
    Object.assign(upstream, {
      port: bound,
      url: `http://127.0.0.1:${bound}`,
      close: () =>
        new Promise<void>((resolve) => {
          for (const client of wss.clients) client.terminate();
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    });
  };
  upstream.reopen = () => open(upstream.port);
  await open(port);
  return upstream;
}

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

function get(port: number, path: string, options: { headers?: Record<string, string>; localAddress?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, agent: false, localAddress: options.localAddress, headers: { host: HOST, ...options.headers } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Opens a WebSocket through the proxy and returns the name of the upstream that echoes. */
async function wsUpstream(port: number, options: { headers?: Record<string, string>; localAddress?: string } = {}): Promise<{ name: string; ws: WebSocket }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${PREFIX}/ws`, { headers: { host: HOST, ...options.headers }, localAddress: options.localAddress });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send('hi');
  const reply = await new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
  return { name: reply.split(':')[0]!, ws };
}

/** The proxy in an Express app, with upgrades through it. */
async function startFront(express: (typeof EXPRESS_VERSIONS)[number][1], options: ProxyOptions): Promise<ProxyApp> {
  const front = await startProxyApp(express, options);
  return front;
}

function addressOf(i: number): string {
  return `127.0.0.${i + 2}`;
}

function cookieValue(setCookie: string[] | undefined, name: string): string | undefined {
  const line = setCookie?.find((entry) => entry.startsWith(`${name}=`));
  return line?.slice(name.length + 1).split(';')[0];
}

describe.each(EXPRESS_VERSIONS)('balance (%s)', (_label, express) => {
  let a: NamedUpstream;
  let b: NamedUpstream;
  const open: Array<{ close(): Promise<void> }> = [];
  const sockets: WebSocket[] = [];

  beforeEach(async () => {
    a = await startNamed('a');
    b = await startNamed('b');
  });
  afterEach(async () => {
    for (const ws of sockets.splice(0)) ws.terminate();
    for (const running of open.splice(0)) await running.close();
    a.release();
    b.release();
    await a.close().catch(() => {});
    await b.close().catch(() => {});
  });

  async function front(options: Omit<ProxyOptions, 'routes'>, route: Record<string, unknown> = {}): Promise<ProxyApp> {
    const proxy = createProxy({ ...options, routes: { [HOST]: { target: [a.url, b.url], ...route } } } as ProxyOptions);
    const app = express();
    app.use(PREFIX, proxy);
    const server = http.createServer(app);
    server.on('upgrade', proxy.upgradeThrough(app, PREFIX));
    const running = Object.assign(await listen(server), { server });
    open.push({ close: async () => (await proxy.close({ timeout: 100 }), await running.close()) });
    return running;
  }

  it('round robin stays the default: requests alternate', async () => {
    const proxy = await front({});
    const names = [];
    for (let i = 0; i < 4; i++) names.push((await get(proxy.port, `${PREFIX}/`)).body);
    expect(names).toEqual(['a', 'b', 'a', 'b']);
  });

  describe("'ip-hash'", () => {
    it('keeps each of 20 client addresses on one upstream, spreads them over both, and moves only the clients of an upstream taken out', async () => {
      const proxy = await front({ balance: 'ip-hash', passiveHealth: { maxFails: 1, failTimeout: 400 } });
      const home = new Map<string, string>();
      for (let i = 0; i < 20; i++) {
        const seen = new Set<string>();
        for (let n = 0; n < 3; n++) seen.add((await get(proxy.port, `${PREFIX}/`, { localAddress: addressOf(i) })).body);
        expect(seen.size).toBe(1);
        home.set(addressOf(i), [...seen][0]!);
      }
      const onA = [...home].filter(([, name]) => name === 'a').map(([address]) => address);
      const onB = [...home].filter(([, name]) => name === 'b').map(([address]) => address);
      expect(onA.length).toBeGreaterThan(0);
      expect(onB.length).toBeGreaterThan(0);

      // A's clients go to b (never refused); b's stay where they were.
      await a.close();
      for (const address of onA) expect((await get(proxy.port, `${PREFIX}/`, { localAddress: address })).body).toBe('b');
      for (const address of onB) expect((await get(proxy.port, `${PREFIX}/`, { localAddress: address })).body).toBe('b');

      // Back after failTimeout: a's clients return to it, b's do not move.
      await a.reopen();
      await new Promise((resolve) => setTimeout(resolve, 450));
      for (const address of onA) expect((await get(proxy.port, `${PREFIX}/`, { localAddress: address })).body).toBe('a');
      for (const address of onB) expect((await get(proxy.port, `${PREFIX}/`, { localAddress: address })).body).toBe('b');
    });

    it('sends a WebSocket to the upstream that HTTP from the same address goes to', async () => {
      const proxy = await front({ balance: 'ip-hash' });
      for (let i = 0; i < 6; i++) {
        const http = (await get(proxy.port, `${PREFIX}/`, { localAddress: addressOf(i) })).body;
        const { name, ws } = await wsUpstream(proxy.port, { localAddress: addressOf(i) });
        sockets.push(ws);
        expect(name).toBe(http);
      }
    });

    it('hashes the client address a trusted proxy in front reports, not the peer', async () => {
      const proxy = await front({ balance: 'ip-hash', trustProxy: 'loopback' });
      const byForwarded = new Map<string, Set<string>>();
      for (let i = 0; i < 10; i++) {
        const client = `203.0.113.${i + 1}`;
        const names = new Set<string>();
        // From a different loopback peer each time: the forwarded client decides.
        for (let n = 0; n < 3; n++) names.add((await get(proxy.port, `${PREFIX}/`, { localAddress: addressOf(n), headers: { 'x-forwarded-for': client } })).body);
        byForwarded.set(client, names);
      }
      for (const names of byForwarded.values()) expect(names.size).toBe(1);
      expect(new Set([...byForwarded.values()].map((names) => [...names][0])).size).toBe(2);
    });
  });

  describe('{ cookie }', () => {
    it('sets an opaque HttpOnly SameSite=Lax cookie for the mount, and requests with it stay on that upstream', async () => {
      const proxy = await front({ balance: { cookie: 'hp_up' } });
      const first = await get(proxy.port, `${PREFIX}/`);
      const setCookie = first.headers['set-cookie'];
      expect(setCookie).toHaveLength(1);
      expect(setCookie![0]).toMatch(/^hp_up=[A-Za-z0-9_-]{22}; Path=\/preview; HttpOnly; SameSite=Lax$/);
      const value = cookieValue(setCookie, 'hp_up')!;
      // Opaque: nothing of the upstream's address or port.
      for (const upstream of [a, b]) {
        expect(value).not.toContain(String(upstream.port));
        expect(Buffer.from(value, 'base64url').toString('latin1')).not.toContain(String(upstream.port));
      }
      for (let i = 0; i < 6; i++) {
        const next = await get(proxy.port, `${PREFIX}/`, { headers: { cookie: `other=1; hp_up=${value}` } });
        expect(next.body).toBe(first.body);
        // The client has the right cookie: no new one.
        expect(next.headers['set-cookie']).toBeUndefined();
      }
    });

    it('treats a forged or stale value as absent: served, and given a cookie that works', async () => {
      const proxy = await front({ balance: { cookie: 'hp_up' } });
      const forged = await get(proxy.port, `${PREFIX}/`, { headers: { cookie: 'hp_up=AAAAAAAAAAAAAAAAAAAAAA' } });
      expect(forged.status).toBe(200);
      const value = cookieValue(forged.headers['set-cookie'], 'hp_up');
      expect(value).toBeDefined();
      expect((await get(proxy.port, `${PREFIX}/`, { headers: { cookie: `hp_up=${value}` } })).body).toBe(forged.body);
    });

    it('sends a client whose upstream is out to the other one with a new cookie, never refused', async () => {
      const proxy = await front({ balance: { cookie: 'hp_up' } });
      const toA = await (async () => {
        for (;;) {
          const answer = await get(proxy.port, `${PREFIX}/`);
          if (answer.body === 'a') return cookieValue(answer.headers['set-cookie'], 'hp_up')!;
        }
      })();
      await a.close();
      const moved = await get(proxy.port, `${PREFIX}/`, { headers: { cookie: `hp_up=${toA}` } });
      expect(moved.status).toBe(200);
      expect(moved.body).toBe('b');
      const toB = cookieValue(moved.headers['set-cookie'], 'hp_up');
      expect(toB).toBeDefined();
      expect(toB).not.toBe(toA);
    });

    it('marks the cookie Secure when the client came over https (as a trusted proxy in front says)', async () => {
      const proxy = await front({ balance: { cookie: 'hp_up' }, trustProxy: 'loopback' });
      const answer = await get(proxy.port, `${PREFIX}/`, { headers: { 'x-forwarded-proto': 'https' } });
      expect(answer.headers['set-cookie']![0]).toMatch(/; Secure$/);
      const plain = await get(proxy.port, `${PREFIX}/`);
      expect(plain.headers['set-cookie']![0]).not.toMatch(/Secure/);
    });

    it('sends a WebSocket with the cookie to the cookie’s upstream', async () => {
      const proxy = await front({ balance: { cookie: 'hp_up' } });
      for (let i = 0; i < 4; i++) {
        const answer = await get(proxy.port, `${PREFIX}/`);
        const value = cookieValue(answer.headers['set-cookie'], 'hp_up')!;
        const { name, ws } = await wsUpstream(proxy.port, { headers: { cookie: `hp_up=${value}` } });
        sockets.push(ws);
        expect(name).toBe(answer.body);
      }
    });

    it('agrees across proxies given the same secret', async () => {
      const first = await front({ balance: { cookie: 'hp_up', secret: 'a shared secret of 32 chars.....' } });
      const second = await front({ balance: { cookie: 'hp_up', secret: 'a shared secret of 32 chars.....' } });
      for (let i = 0; i < 2; i++) {
        const answer = await get(first.port, `${PREFIX}/`);
        const value = cookieValue(answer.headers['set-cookie'], 'hp_up')!;
        const other = await get(second.port, `${PREFIX}/`, { headers: { cookie: `hp_up=${value}` } });
        expect(other.body).toBe(answer.body);
        expect(other.headers['set-cookie']).toBeUndefined();
      }
    });
  });

  describe("'least-connections'", () => {
    it('sends the next requests to the other upstream while one holds a long request', async () => {
      const proxy = await front({ balance: 'least-connections' });
      const held = get(proxy.port, `${PREFIX}/hold`);
      await waitFor(() => a.held + b.held === 1, 3000, 'the long request to arrive');
      const busy = a.held === 1 ? 'a' : 'b';
      const other = busy === 'a' ? 'b' : 'a';
      for (let i = 0; i < 4; i++) expect((await get(proxy.port, `${PREFIX}/`)).body).toBe(other);
      a.release();
      b.release();
      expect((await held).body).toBe(busy);
      // Nothing in flight: ties go round robin again, both get requests.
      const names = new Set<string>();
      for (let i = 0; i < 4; i++) names.add((await get(proxy.port, `${PREFIX}/`)).body);
      expect(names).toEqual(new Set(['a', 'b']));
    });

    it('counts an open WebSocket until it closes', async () => {
      const proxy = await front({ balance: 'least-connections' });
      const open = await wsUpstream(proxy.port);
      const other = open.name === 'a' ? 'b' : 'a';
      // While it is open its upstream has one in flight, the other none.
      for (let i = 0; i < 4; i++) expect((await get(proxy.port, `${PREFIX}/`)).body).toBe(other);
      open.ws.close();
      await new Promise((resolve) => open.ws.once('close', resolve));
      // Closed: a tie again, and round robin reaches its upstream.
      await waitFor(async () => (await get(proxy.port, `${PREFIX}/`)).body === open.name, 3000, 'the closed WebSocket to stop counting');
    });
  });

  describe('{ hash }', () => {
    it("keeps each key on one upstream and goes round robin for requests without one", async () => {
      const proxy = await front({ balance: { hash: (req) => req.headers['x-user'] as string | undefined } });
      const homes = new Set<string>();
      for (let user = 0; user < 12; user++) {
        const names = new Set<string>();
        for (let n = 0; n < 3; n++) names.add((await get(proxy.port, `${PREFIX}/`, { headers: { 'x-user': `user-${user}` } })).body);
        expect(names.size).toBe(1);
        homes.add([...names][0]!);
      }
      expect(homes.size).toBe(2);
      const keyless = [];
      for (let i = 0; i < 4; i++) keyless.push((await get(proxy.port, `${PREFIX}/`)).body);
      expect(new Set(keyless).size).toBe(2);
    });

    it('answers a key function that throws with a 500, logged, and sends nothing upstream', async () => {
      const { logger, records } = captureLogs();
      const proxy = await front({
        logger,
        balance: {
          hash: () => {
            throw new Error('no session store');
          },
        },
      });
      const answer = await get(proxy.port, `${PREFIX}/`);
      expect(answer.status).toBe(500);
      expect(answer.body).not.toContain('session store');
      const record = records.find((entry) => entry.level === 'error');
      expect(JSON.stringify(record)).toContain('no session store');
    });
  });

  it('takes a route’s own policy over the proxy-wide one', async () => {
    const proxy = await front({ balance: 'round-robin' }, { balance: 'ip-hash' });
    const names = new Set<string>();
    for (let i = 0; i < 5; i++) names.add((await get(proxy.port, `${PREFIX}/`, { localAddress: addressOf(0) })).body);
    expect(names.size).toBe(1);
  });
});

describe('balance options', () => {
  const routes = { [HOST]: { target: ['http://127.0.0.1:1', 'http://127.0.0.1:2'] } };
  it.each([
    ['random', /balance must be 'round-robin', 'least-connections', 'ip-hash'/],
    [{ cookie: 'bad name' }, /balance\.cookie must be a cookie name/],
    [{ cookie: 'sid', secret: 'short' }, /balance\.secret must be a string of at least 16 characters/],
    [{ cookie: 'sid', sameSite: 'strict' }, /unknown option "balance\.sameSite"/],
    [{ hash: 'x-user' }, /balance\.hash must be a function/],
    [42, /balance must be/],
  ])('refuses %p at createProxy', (balance, message) => {
    expect(() => createProxy({ routes, balance } as unknown as ProxyOptions)).toThrow(ProxyOptionsError);
    expect(() => createProxy({ routes, balance } as unknown as ProxyOptions)).toThrow(message);
  });

  it('refuses a bad route balance, naming the route', () => {
    const bad = { [HOST]: { target: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], balance: 'sticky' } };
    expect(() => createProxy({ routes: bad } as unknown as ProxyOptions)).toThrow(/routes\["app\.test"\]\.balance must be/);
  });
});
