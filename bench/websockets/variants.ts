// The proxies of the idle-WebSocket bench, each on a node:http server of its
// own with the server's 'upgrade' event wired the way its docs say. Every one
// serves HTTP through the same handler too, as a real deployment would.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { ProxyServer } from 'httpxy';
import winston from 'winston';
import { createProxy } from '../../src/index.ts';
import { HOST } from '../scenarios.ts';
import { DiscardTransport, GUARDS_ON } from '../variants/honest-proxy.ts';

export const WEBSOCKET_VARIANTS = ['httpxy-raw', 'hpm', 'honest-proxy'] as const;
export type WebSocketVariant = (typeof WEBSOCKET_VARIANTS)[number];

export const WEBSOCKET_LABELS: Record<WebSocketVariant, string> = {
  'httpxy-raw': 'httpxy (raw node:http)',
  hpm: 'hpm (bare)',
  'honest-proxy': 'honest-proxy (guards on)',
};

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // A backlog above a batch of handshakes (client.ts), so none waits for a SYN retry.
    server.listen({ port: 0, host: '127.0.0.1', backlog: 1024 }, () => resolve((server.address() as AddressInfo).port));
  });
}

const starters: Record<WebSocketVariant, (target: string) => http.Server> = {
  // The floor: httpxy's ws() with nothing around it.
  'httpxy-raw': (target) => {
    const proxy = new ProxyServer();
    const server = http.createServer((req, res) => {
      proxy.web(req, res, { target }).catch(() => res.writeHead(502).end());
    });
    server.on('upgrade', (req, socket, head) => {
      proxy.ws(req, socket as Socket, { target }, head).catch(() => socket.destroy());
    });
    return server;
  },
  // hpm's README: `ws: true` and the server's upgrade event handed to `.upgrade`.
  hpm: (target) => {
    const proxy = createProxyMiddleware({ target, ws: true });
    const app = express();
    app.use(proxy);
    const server = http.createServer(app);
    server.on('upgrade', proxy.upgrade);
    return server;
  },
  // As bench/variants/honest-proxy.ts (guards on, winston at info into a
  // discarding transport), with the README's `server.on('upgrade', proxy.upgrade)`.
  'honest-proxy': (target) => {
    const logger = winston.createLogger({ level: 'info', transports: [new DiscardTransport()] });
    const proxy = createProxy({ routes: { [HOST]: target }, logger, ...GUARDS_ON });
    const app = express();
    app.use(proxy);
    const server = http.createServer(app);
    server.on('upgrade', proxy.upgrade);
    return server;
  },
};

export function isWebSocketVariant(name: string): name is WebSocketVariant {
  return (WEBSOCKET_VARIANTS as readonly string[]).includes(name);
}

export function startVariant(variant: WebSocketVariant, target: string): Promise<number> {
  return listen(starters[variant](target));
}
