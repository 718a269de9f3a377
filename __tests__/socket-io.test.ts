import http from 'node:http';
import { Server } from 'socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import { createProxy, type BalanceOption } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX } from './helpers/apps.ts';
import { waitFor } from './helpers/route-lookup.ts';
import { listen, type Running } from './helpers/servers.ts';

// Socket.IO's official server and client, as most Express realtime apps use
// them, behind a route with two upstreams. Long polling is a session of
// several requests: the handshake, then polls and posts that must reach the
// upstream holding the session ("Session ID unknown" anywhere else).

const CLIENTS = 6;

interface SocketIoUpstream extends Running {
  name: string;
}

async function startSocketIoUpstream(name: string): Promise<SocketIoUpstream> {
  const server = http.createServer();
  const ioServer = new Server(server);
  ioServer.on('connection', (socket) => {
    socket.emit('hello', name);
    socket.on('echo', (text: string, reply: (answer: string) => void) => reply(`${name}:${text}`));
  });
  const running = await listen(server);
  return {
    ...running,
    name,
    close: async () => {
      ioServer.disconnectSockets(true);
      await running.close();
    },
  };
}

/** Connects one client, exchanges an event each way, and names the upstream that held the session. */
async function session(port: number, options: { transports: Array<'polling' | 'websocket'>; localAddress?: string; cookies?: boolean }): Promise<string> {
  const client: ClientSocket = io(`http://127.0.0.1:${port}`, {
    path: `${PREFIX}/socket.io/`,
    transports: options.transports,
    forceNew: true,
    reconnection: false,
    timeout: 3000,
    // Node's client keeps cookies (the sticky one) only with withCredentials.
    withCredentials: options.cookies ?? false,
    ...(options.localAddress && { agent: new http.Agent({ localAddress: options.localAddress }) as never, localAddress: options.localAddress }),
  });
  try {
    const hello = await new Promise<string>((resolve, reject) => {
      client.once('hello', resolve);
      client.once('connect_error', reject);
    });
    // Several more polls and posts after the handshake, each on the same session.
    for (let i = 0; i < 3; i++) {
      const answer = await client.timeout(3000).emitWithAck('echo', `ping ${i}`);
      expect(answer).toBe(`${hello}:ping ${i}`);
    }
    if (options.transports.includes('websocket')) {
      // Upgraded from polling, with the same session, through the proxy.
      await waitFor(() => client.io.engine.transport.name === 'websocket', 3000, 'the upgrade to a WebSocket');
      expect(await client.timeout(3000).emitWithAck('echo', 'over ws')).toBe(`${hello}:over ws`);
    }
    return hello;
  } finally {
    client.disconnect();
  }
}

describe.each(EXPRESS_VERSIONS)('Socket.IO through a two-upstream route (%s)', (_label, express) => {
  let upstreams: SocketIoUpstream[];
  const running: Array<{ close(): Promise<void> }> = [];

  beforeEach(async () => {
    upstreams = [await startSocketIoUpstream('a'), await startSocketIoUpstream('b')];
  });
  afterEach(async () => {
    for (const part of running.splice(0)) await part.close();
    for (const upstream of upstreams) await upstream.close();
  });

  async function front(balance: BalanceOption | undefined): Promise<number> {
    const proxy = createProxy({ routes: { '127.0.0.1': { target: upstreams.map((upstream) => upstream.url) } }, ...(balance && { balance }) });
    const app = express();
    app.use(PREFIX, proxy);
    const server = http.createServer(app);
    server.on('upgrade', proxy.upgradeThrough(app, PREFIX));
    const listening = await listen(server);
    running.push({ close: async () => (await proxy.close({ timeout: 100 }), await listening.close()) });
    return listening.port;
  }

  it("with 'ip-hash' every long-polling session works, clients from 6 addresses spread over both upstreams", async () => {
    const port = await front('ip-hash');
    const names = [];
    for (let i = 0; i < CLIENTS; i++) names.push(await session(port, { transports: ['polling'], localAddress: `127.0.0.${i + 2}` }));
    expect(names).toHaveLength(CLIENTS);
    expect(new Set(names)).toEqual(new Set(['a', 'b']));
  });

  it('with { cookie } every long-polling session works, spread over both upstreams', async () => {
    const port = await front({ cookie: 'io_upstream' });
    const names = [];
    for (let i = 0; i < CLIENTS; i++) names.push(await session(port, { transports: ['polling'], cookies: true }));
    expect(new Set(names)).toEqual(new Set(['a', 'b']));
  });

  it('with { cookie } a session that starts polling and upgrades to a WebSocket stays on its upstream', async () => {
    const port = await front({ cookie: 'io_upstream' });
    for (let i = 0; i < 4; i++) await session(port, { transports: ['polling', 'websocket'], cookies: true });
  });

  it('with round robin (the default) long polling fails, as Socket.IO documents: the reason for the sticky policies', async () => {
    const port = await front(undefined);
    const outcomes = await Promise.allSettled(Array.from({ length: CLIENTS }, () => session(port, { transports: ['polling'] })));
    expect(outcomes.filter((outcome) => outcome.status === 'rejected').length).toBeGreaterThan(0);
  });
});
