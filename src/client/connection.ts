import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

const LAST_REQUEST = new WeakMap<Duplex, IncomingMessage>();

/**
 * This request is the last its connection will answer: the client asked to
 * close, or the proxy will close after refusing it. Node goes on parsing
 * pipelined requests behind it, but RFC 9112 9.6 says no later request on the
 * connection may be processed, and behind a request whose framing was
 * refused, "the next request" is just where the attacker says it is.
 */
export function markLastRequest(req: IncomingMessage): void {
  if (!LAST_REQUEST.has(req.socket)) LAST_REQUEST.set(req.socket, req);
}

/** True for a request that arrived on its connection after the last one. */
export function comesAfterLastRequest(req: IncomingMessage): boolean {
  const last = LAST_REQUEST.get(req.socket);
  return last !== undefined && last !== req;
}
