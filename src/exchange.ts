import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { ResolvedRoute } from './routes/target.ts';

export type NextFunction = (err?: unknown) => void;

/** What the proxy knows about one request while it is in flight. */
export interface Exchange {
  requestId: string | undefined;
  /** The routing key from the Host header, once it is known to be valid. */
  host: string | undefined;
  route: ResolvedRoute | undefined;
  next: NextFunction | undefined;
  /** The request to the upstream, once httpxy has made it. */
  proxyReq: ClientRequest | undefined;
  /** What httpxy reads the body from when it must be counted on the way; else the request itself. */
  bodySource: Readable | undefined;
  /** Set when upstream response headers arrived: from then on a failure can only abort. */
  responseStarted: boolean;
  /** Set when a failure was handled, so a second error event cannot answer twice. */
  failed: boolean;
  /** Set once the request was replayed on a fresh connection (at most once). */
  retried: boolean;
}

const EXCHANGE = Symbol('honest-proxy.exchange');
type WithExchange = IncomingMessage & { [EXCHANGE]?: Exchange };

export function beginExchange(req: IncomingMessage, next: NextFunction | undefined, requestId: string | undefined): Exchange {
  const exchange: Exchange = {
    requestId,
    host: undefined,
    route: undefined,
    next,
    proxyReq: undefined,
    bodySource: undefined,
    responseStarted: false,
    failed: false,
    retried: false,
  };
  (req as WithExchange)[EXCHANGE] = exchange;
  return exchange;
}

export function exchangeOf(req: IncomingMessage): Exchange | undefined {
  return (req as WithExchange)[EXCHANGE];
}

/** Where a failure is answered: an HTTP response, or the raw socket of an upgrade. */
export type ClientSide = ServerResponse | Duplex;

export function isResponse(client: ClientSide | undefined): client is ServerResponse {
  return client !== undefined && 'writeHead' in client;
}

/** True when nobody is left to read an answer: the client hung up (HTTP response or raw upgrade socket). */
export function clientIsGone(client: ClientSide | undefined): boolean {
  if (!client) return true;
  if (isResponse(client)) return client.destroyed || !client.socket || client.socket.destroyed;
  return client.destroyed;
}
