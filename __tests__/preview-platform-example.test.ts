import { createHook } from 'node:async_hooks';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { startPreviewPlatform, type PreviewPlatform, type PreviewPlatformOptions } from '../docs/examples/preview-platform/platform.ts';

// docs/examples/preview-platform, run as it ships: its own Express (5), real
// sandbox servers, ephemeral ports. Each promise its README makes, checked
// from the client's side and from the sandbox's (which records what it got).

const TOKEN = 'platform-secret-token';
const start = (options: Partial<PreviewPlatformOptions> = {}) =>
  startPreviewPlatform({ port: 0, tokens: { [TOKEN]: 'ada' }, logger: false, ...options });

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a connection of its own (no pool left behind), with the Host the client chose. */
function get(platform: PreviewPlatform, host: string, path = '/', headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: platform.port, path, headers: { host, ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

/** What the sandbox's app says it received (it echoes every request as JSON). */
const echoed = (reply: Reply) => JSON.parse(reply.body) as { sandbox: string; url: string; headers: http.IncomingHttpHeaders };

const bearer = { authorization: `Bearer ${TOKEN}` };

/** A WebSocket through the platform: its first message (the sandbox's echo of the handshake), or the refusal's status. */
function openWs(platform: PreviewPlatform, host: string, path: string, headers: Record<string, string>) {
  const ws = new WebSocket(`ws://127.0.0.1:${platform.port}${path}`, { headers: { host, ...headers } });
  const first = new Promise<{ ws: WebSocket; handshake: ReturnType<typeof echoed> } | { refused: number }>((resolve, reject) => {
    ws.once('message', (data) => resolve({ ws, handshake: JSON.parse(String(data)) }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ refused: res.statusCode! });
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
  return first;
}

async function waitFor(condition: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const stateOf = (platform: PreviewPlatform, id: string) => platform.sandboxes.list().find((sandbox) => sandbox.id === id)?.state;

describe('the preview-platform example', () => {
  let platform: PreviewPlatform;
  beforeAll(async () => {
    platform = await start({ sandboxes: ['alpha', 'beta', 'cached', 'sleepy', 'ws'], bootMs: 300 });
  });
  afterAll(() => platform.close());

  it('refuses a request without a valid token with 401, and nothing reaches the sandbox or the store', async () => {
    const lookups = platform.sandboxes.lookups;
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { cookie: '__Host-preview_session=wrong' }]) {
      const reply = await get(platform, platform.previewHost('alpha'), '/?preview_token=wrong', headers);
      expect(reply.status).toBe(401);
      expect(reply.headers['www-authenticate']).toBe('Bearer');
    }
    expect(platform.sandboxes.received('alpha')).toEqual([]);
    expect(platform.sandboxes.lookups).toBe(lookups);
  });

  it('forwards with the token in a header, never the token itself; the sandbox learns the user from the platform', async () => {
    const reply = await get(platform, platform.previewHost('alpha'), '/', { ...bearer, 'x-preview-user': 'mallory' });
    expect(reply.status).toBe(200);
    const seen = echoed(reply);
    expect(seen.sandbox).toBe('alpha');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-preview-user']).toBe('ada');
  });

  it('strips the platform cookie and query parameter, and leaves the rest of both as they were', async () => {
    const reply = await get(platform, platform.previewHost('alpha'), `/page?preview_token=${TOKEN}&tab=2`, {
      cookie: `theme=dark; __Host-preview_session=${TOKEN}; lang=en`,
    });
    expect(reply.status).toBe(200);
    const seen = echoed(reply);
    expect(seen.url).toBe('/page?tab=2');
    expect(seen.headers.cookie).toBe('theme=dark; lang=en');
    expect(seen.headers['x-preview-user']).toBe('ada');
    expect(JSON.stringify(platform.sandboxes.received('alpha'))).not.toContain(TOKEN);
  });

  it('answers a sandbox that does not exist, or a port it does not serve, with the proxy 404', async () => {
    for (const host of [platform.previewHost('nobody'), 'alpha.preview.localhost', '4000-alpha.preview.localhost']) {
      const reply = await get(platform, host, '/', bearer);
      expect(reply.status).toBe(404);
      expect(reply.headers['proxy-status']).toBe('proxy; error=destination_not_found');
    }
  });

  it('looks a sandbox up once for many requests: concurrent ones share the lookup, later ones hit the cache', async () => {
    const before = platform.sandboxes.lookups;
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => get(platform, platform.previewHost('cached'), '/', bearer)));
    for (let i = 0; i < 10; i++) concurrent.push(await get(platform, platform.previewHost('cached'), '/', bearer));
    expect(concurrent.map((reply) => reply.status)).toEqual(Array(20).fill(200));
    expect(platform.sandboxes.lookups - before).toBe(1);
    expect(platform.sandboxes.received('cached')).toHaveLength(20);
  });

  it('answers a stopped sandbox 503 with Retry-After, and a request while it boots waits for it (startupGrace)', async () => {
    // Routed once, so the cache holds its route: stopping it must drop that.
    expect((await get(platform, platform.previewHost('sleepy'), '/', bearer)).status).toBe(200);
    await platform.sandboxes.stop('sleepy');
    const stopped = await get(platform, platform.previewHost('sleepy'), '/', bearer);
    expect(stopped.status).toBe(503);
    expect(stopped.headers['retry-after']).toBe('1');
    expect(stopped.headers['proxy-status']).toBe('proxy; error=destination_unavailable');
    // That request woke it: its app listens bootMs (300 ms) from now.
    expect(stateOf(platform, 'sleepy')).toBe('booting');
    const received = platform.sandboxes.received('sleepy').length;
    const woken = await get(platform, platform.previewHost('sleepy'), '/', bearer);
    expect(woken.status).toBe(200);
    expect(echoed(woken).sandbox).toBe('sleepy');
    expect(platform.sandboxes.received('sleepy')).toHaveLength(received + 1);
    expect(stateOf(platform, 'sleepy')).toBe('running');
  });

  it('proxies a WebSocket with the token (header or query), stripped as on HTTP, and refuses one without', async () => {
    const byHeader = await openWs(platform, platform.previewHost('ws'), '/socket', bearer);
    if (!('ws' in byHeader)) throw new Error(`refused: ${byHeader.refused}`);
    expect(byHeader.handshake.headers.authorization).toBeUndefined();
    expect(byHeader.handshake.headers['x-preview-user']).toBe('ada');
    const echo = new Promise((resolve) => byHeader.ws.once('message', (data) => resolve(String(data))));
    byHeader.ws.send('hello');
    await expect(echo).resolves.toBe('hello');
    byHeader.ws.close();

    const byQuery = await openWs(platform, platform.previewHost('ws'), `/socket?preview_token=${TOKEN}&v=1`, {});
    if (!('ws' in byQuery)) throw new Error(`refused: ${byQuery.refused}`);
    expect(byQuery.handshake.url).toBe('/socket?v=1');
    byQuery.ws.close();

    const received = platform.sandboxes.received('ws').length;
    await expect(openWs(platform, platform.previewHost('ws'), '/socket', {})).resolves.toEqual({ refused: 401 });
    await expect(openWs(platform, platform.previewHost('ws'), '/socket?preview_token=wrong', {})).resolves.toEqual({ refused: 401 });
    expect(platform.sandboxes.received('ws')).toHaveLength(received);
  });

  it("serves the proxy's metrics at /metrics on the platform's own host", async () => {
    await get(platform, platform.previewHost('beta'), '/', bearer);
    const metrics = await get(platform, `127.0.0.1:${platform.port}`, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^honest_proxy_requests_total\{proxy="preview",status="200",code="upstream"\} [1-9]/m);
    expect(metrics.body).toMatch(/^honest_proxy_requests_total\{proxy="preview",status="404",code="ROUTE_NOT_FOUND"\} [1-9]/m);
    expect(metrics.body).toMatch(/^honest_proxy_route_cache_hits_total\{proxy="preview"\} [1-9]/m);
    // A preview host's /metrics is the sandbox's own path, behind the auth.
    expect((await get(platform, platform.previewHost('beta'), '/metrics')).status).toBe(401);
  });
});

describe('the preview-platform example: a rate limit per sandbox', () => {
  let platform: PreviewPlatform;
  beforeAll(async () => {
    platform = await start({ sandboxes: ['busy', 'quiet'], rateLimit: { limit: 3, windowMs: 60_000 } });
  });
  afterAll(() => platform.close());

  it('answers 429 for the sandbox over its limit and not for another', async () => {
    const busy = [];
    for (let i = 0; i < 4; i++) busy.push(await get(platform, platform.previewHost('busy'), `/${i}`, bearer));
    expect(busy.map((reply) => reply.status)).toEqual([200, 200, 200, 429]);
    expect(Number(busy[3]!.headers['retry-after'])).toBeGreaterThan(0);
    expect(platform.sandboxes.received('busy')).toHaveLength(3);
    // Any port of the sandbox counts against it, whatever the route lookup says.
    expect((await get(platform, '4000-busy.preview.localhost', '/', bearer)).status).toBe(429);
    expect((await get(platform, platform.previewHost('quiet'), '/', bearer)).status).toBe(200);
  });
});

describe('the preview-platform example: idle sandboxes', () => {
  let platform: PreviewPlatform;
  beforeAll(async () => {
    platform = await start({
      sandboxes: ['idle', 'terminal'],
      activityIntervalMs: 50,
      idleAfterMs: 500,
      idleCheckMs: 25,
      bootMs: 300,
    });
  });
  afterAll(() => platform.close());

  it('stops a sandbox without traffic, keeps one with an open WebSocket, and answers the stopped one 503 with Retry-After', async () => {
    const opened = await openWs(platform, platform.previewHost('terminal'), '/', bearer);
    if (!('ws' in opened)) throw new Error(`refused: ${opened.refused}`);
    expect((await get(platform, platform.previewHost('idle'), '/', bearer)).status).toBe(200);

    await waitFor(() => stateOf(platform, 'idle') === 'stopped', 'the idle sandbox to be stopped');
    // Well past idleAfterMs with nothing but the open WebSocket: its activity reports kept it running.
    await sleep(700);
    expect(stateOf(platform, 'terminal')).toBe('running');
    expect(opened.ws.readyState).toBe(WebSocket.OPEN);

    const stopped = await get(platform, platform.previewHost('idle'), '/', bearer);
    expect(stopped.status).toBe(503);
    expect(stopped.headers['retry-after']).toBe('1');
    opened.ws.close();
  });
});

describe('the preview-platform example: close()', () => {
  /**
   * Sockets, servers and timers created while `run` runs that still keep the
   * process alive after it: each is told to the hook when created and when
   * gone, so what other tests (or jest) hold does not count.
   */
  async function leftOpen(run: () => Promise<void>): Promise<string[]> {
    const live = new Map<number, { type: string; resource: { hasRef?: () => boolean } }>();
    let recording = true;
    const hook = createHook({
      init(id, type, _trigger, resource) {
        if (recording && ['TCPWRAP', 'TCPSERVERWRAP', 'Timeout'].includes(type)) live.set(id, { type, resource: resource as { hasRef?: () => boolean } });
      },
      destroy: (id) => void live.delete(id),
    }).enable();
    try {
      await run();
      recording = false; // the waiting below has timers of its own
      const holding = () => [...live.values()].filter(({ resource }) => resource.hasRef?.() ?? true).map(({ type }) => type);
      // A closed handle is reported gone a tick or two later.
      await waitFor(() => holding().length === 0, 'nothing left open', 1000).catch(() => undefined);
      return holding();
    } finally {
      hook.disable();
    }
  }

  it('ends an open WebSocket with 1001, closes kept-alive client connections, and leaves nothing open', async () => {
    let closeCode: Promise<number> | undefined;
    const left = await leftOpen(async () => {
      const platform = await start({ sandboxes: ['alpha'], bootMs: 60_000 });
      const opened = await openWs(platform, platform.previewHost('alpha'), '/', bearer);
      if (!('ws' in opened)) throw new Error(`refused: ${opened.refused}`);
      closeCode = new Promise((resolve) => opened.ws.once('close', resolve));
      // A client connection kept open after its request, as a browser keeps one.
      const agent = new http.Agent({ keepAlive: true });
      const status = await new Promise<number>((resolve) =>
        http.get({ host: '127.0.0.1', port: platform.port, headers: { host: platform.previewHost('alpha'), ...bearer }, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        }),
      );
      expect(status).toBe(200);
      // A sandbox booting when the platform closes: its boot timer must not outlive it.
      await platform.sandboxes.stop('alpha');
      platform.sandboxes.wake('alpha');

      await platform.close();
    });
    await expect(closeCode).resolves.toBe(1001);
    expect(left).toEqual([]);
  });
});
