import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return req.method === 'GET' && typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket';
}

/**
 * A response on an upgrade's raw socket, for an upgrade the proxy declines
 * (`Upgrade: h2c` from `curl --http2`): RFC 9110 7.8 lets a server ignore
 * Upgrade and answer in HTTP/1.1. Node stopped parsing the connection when it
 * handed the socket over, so the response closes it.
 */
export function responseOnUpgradeSocket(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
  });
  return res;
}
