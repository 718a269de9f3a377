import http from 'node:http';
import net from 'node:net';
import { WebSocket } from 'ws';
import { createProxy } from '../src/index.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { startRealUpstream, type RealUpstream } from './helpers/real-app.ts';
import { listen, type Running } from './helpers/servers.ts';

// The README's fallback `upgrade` listener, as written there: upgrades the
// proxy leaves alone (outside its mount) are ended instead of hanging open.

describe.each(EXPRESS_VERSIONS)("README's fallback upgrade listener (%s)", (_name, express) => {
  let upstream: RealUpstream;
  let server: http.Server;
  let running: Running;

  beforeAll(async () => {
    upstream = await startRealUpstream();
    const app = express();
    const proxy = createProxy({ routes: { 'app.localhost': upstream.url } });
    app.use('/preview', proxy);
    server = http.createServer(app);
    // First, as the README says: while the app handles an upgrade, req.url has no mount path.
    server.on('upgrade', (req, socket) => { if (!/^\/preview(?:[/?]|$)/.test(req.url ?? '')) socket.destroy(); });
    server.on('upgrade', proxy.upgradeThrough(app, '/preview'));
    running = await listen(server);
  });

  afterAll(async () => {
    await running.close();
    await upstream.close();
  });

  it('an upgrade outside the mount is ended at once, with nothing written', async () => {
    const socket = net.connect(running.port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write('GET /elsewhere HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    const closed = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    socket.destroy();
    expect(closed).toBe(true);
    expect(Buffer.concat(received).length).toBe(0);
  });

  it('an upgrade under the mount still reaches the upstream', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${running.port}/preview/chat`, { headers: { host: 'app.localhost' } });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('hello'));
      ws.once('message', (data) => resolve(String(data)));
      ws.once('error', reject);
    });
    ws.close();
    expect(echoed).toBe('hello');
    expect(upstream.upgrades.map((u) => u.url)).toContain('/chat');
  });
});
