import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, PassThrough } from 'node:stream';
import { numberArrival } from './client/connection.ts';
import type { ProxyError } from './errors.ts';
import type { BodySource } from './guards/body-limit.ts';
import type { RequestTarget } from './request/validate.ts';
import type { ResolvedRoute } from './routes/target.ts';
import type { TrustFunction } from './upstream/forwarded.ts';
import type { UpstreamHeaderPlan } from './upstream/request-headers.ts';

export type NextFunction = (err?: unknown) => void;

/** What the proxy knows about one request while it is in flight. */
export interface Exchange {
  requestId: string | undefined;
  /** Its place among the requests that arrived on its connection (1 for the first). */
  arrival: number;
  /** Routing key and upstream request-target, once the request was found well-formed. */
  target: RequestTarget | undefined;
  route: ResolvedRoute | undefined;
  /** The route's upstream chosen for this request (one of `route.targets`). */
  upstream: URL | undefined;
  /** least-connections: the upstream this exchange is counted against until it ends. */
  countedAgainst: URL | undefined;
  /** balance: { cookie }: the Set-Cookie that keeps the client on the upstream chosen for it. */
  setCookie: string | undefined;
  /** performance.now() at arrival: a startup grace is counted from it. */
  startedAt: number;
  /** Connect retries to the same upstream so far (startup grace). */
  connectAttempts: number;
  /** Set once a connect failure was retried on another upstream of the route. */
  triedAnother: boolean;
  /** The ProxyError the proxy answered or aborted with, for metrics. */
  error: ProxyError | undefined;
  /** Which peers may speak for the client on this request. */
  trust: TrustFunction | undefined;
  /** `req.body` encoded again, when a body parser had read the stream (consumedBody: 'reserialize'). */
  replacementBody: Buffer | undefined;
  /** How the upstream's headers differ from the client's; the client's are never edited. Unset once a WebSocket is open. */
  headerPlan: UpstreamHeaderPlan | undefined;
  next: NextFunction | undefined;
  /** The request to the upstream, once httpxy has made it. */
  proxyReq: ClientRequest | undefined;
  /** What httpxy reads the body from when it must be counted on the way; else the request itself. */
  bodySource: BodySource | undefined;
  /** Hold the body back until the upstream connection is up, so a connect failure can be retried. */
  deferBody: boolean;
  /** This attempt's gate for a deferred body. */
  bodyGate: PassThrough | undefined;
  /** The upstream's response on its way to the client, once it arrived (unset again if the client side refuses its head). */
  upstreamResponse: IncomingMessage | undefined;
  /** Set when the upstream's response (or its 101) arrived: no replay after that. */
  upstreamResponded: boolean;
  /** Set once a byte of the upstream's response was handed to the client: from then on a failure can only abort. */
  clientHeadWritten: boolean;
  /** Set when a failure was handled, so a second error event cannot answer twice. */
  failed: boolean;
  /** Where each engine call's listeners sit in the response's and request's lists (see engine.ts). */
  attemptListeners: readonly number[] | undefined;
  /** Set once the request was replayed on a fresh connection (at most once). */
  retried: boolean;
}

const EXCHANGE = Symbol('honest-proxy.exchange');
type WithExchange = IncomingMessage & { [EXCHANGE]?: Exchange };

export function beginExchange(req: IncomingMessage, next: NextFunction | undefined, requestId: string | undefined): Exchange {
  const exchange: Exchange = {
    requestId,
    arrival: numberArrival(req),
    target: undefined,
    route: undefined,
    upstream: undefined,
    countedAgainst: undefined,
    setCookie: undefined,
    startedAt: performance.now(),
    connectAttempts: 0,
    triedAnother: false,
    error: undefined,
    trust: undefined,
    replacementBody: undefined,
    headerPlan: undefined,
    next,
    proxyReq: undefined,
    bodySource: undefined,
    deferBody: false,
    bodyGate: undefined,
    upstreamResponse: undefined,
    upstreamResponded: false,
    clientHeadWritten: false,
    failed: false,
    retried: false,
    attemptListeners: undefined,
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

/**
 * True when nobody is left to read an answer. A response's own socket is not
 * the test: a pipelined request's response has none until the responses ahead
 * of it are done, yet its client is very much there. The request's socket is
 * the connection.
 */
export function clientIsGone(req: IncomingMessage, client: ClientSide | undefined): boolean {
  if (!client) return true;
  if (isResponse(client)) return client.destroyed || req.socket.destroyed;
  return client.destroyed;
}
