// The upstream of the idle-WebSocket bench: a `ws` WebSocketServer that
// accepts every WebSocket and says nothing on it. It counts what it holds, so
// the bench knows every WebSocket went all the way through the proxy.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { serve } from './child.ts';

let open = 0;

await serve(
  () =>
    new Promise((resolve, reject) => {
      const server = http.createServer((_req, res) => res.writeHead(426).end());
      const wss = new WebSocketServer({ server });
      wss.on('connection', (socket) => {
        open++;
        socket.on('close', () => open--);
        socket.on('error', () => undefined);
      });
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
    }),
  { count: () => ({ open }) },
);
