// A sandbox's app: the untrusted code a platform runs for its users. This one
// answers every request, and every WebSocket's first message, with what it
// received, so what the proxy stripped (and what it added) is there to see.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface Received {
  kind: 'http' | 'websocket';
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface SandboxApp {
  port: number;
  close(): Promise<void>;
}

/** Starts the app on 127.0.0.1:`port` (0: any free port); `received` gets every request that reaches it. */
export async function startSandboxApp(id: string, port: number, received: Received[]): Promise<SandboxApp> {
  const server = http.createServer((req, res) => {
    const seen: Received = { kind: 'http', method: req.method!, url: req.url!, headers: req.headers };
    received.push(seen);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify({ sandbox: id, ...seen }, null, 2)}\n`);
  });
  const webSockets = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    webSockets.handleUpgrade(req, socket, head, (ws) => {
      const seen: Received = { kind: 'websocket', method: req.method!, url: req.url!, headers: req.headers };
      received.push(seen);
      ws.send(JSON.stringify({ sandbox: id, ...seen }));
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const ws of webSockets.clients) ws.terminate();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await new Promise((resolve) => webSockets.close(resolve));
    },
  };
}
