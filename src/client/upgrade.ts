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

/** A WebSocket upgrade on its way through the app, waiting for the proxy middleware to take its socket. */
export interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
}

const PENDING_UPGRADE = Symbol('honest-proxy.upgrade');
type WithPendingUpgrade = IncomingMessage & { [PENDING_UPGRADE]?: PendingUpgrade };

export function holdUpgrade(req: IncomingMessage, pending: PendingUpgrade): void {
  (req as WithPendingUpgrade)[PENDING_UPGRADE] = pending;
}

/** The upgrade this request carries through the app, taken (once) by the proxy that handles it. */
export function takeUpgrade(req: IncomingMessage): PendingUpgrade | undefined {
  const pending = (req as WithPendingUpgrade)[PENDING_UPGRADE];
  if (pending) (req as WithPendingUpgrade)[PENDING_UPGRADE] = undefined;
  return pending;
}

/** True for a request-target at or below `prefix` ('' for everything). */
export function isUnderPath(url: string, prefix: string): boolean {
  if (!prefix) return true;
  // Case-insensitive, as Express matches app.use('/preview', ...) by default.
  if (url.length < prefix.length || url.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) return false;
  const next = url[prefix.length];
  return next === undefined || next === '/' || next === '?';
}
