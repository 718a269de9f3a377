import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough, type Duplex, type Stream } from 'node:stream';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import type { UnreadBodySettler } from '../client/body.ts';
import type { BodySource } from '../guards/body-limit.ts';
import { UpstreamProtocolError } from '../errors.ts';
import { exchangeOf, type Exchange } from '../exchange.ts';
import type { FailureHandler } from '../failure.ts';
import { requestFields, type Logger } from '../logging.ts';
import { socketPathOf } from './address.ts';
import type { UpstreamAgents } from './agent.ts';
import { applyRemovals, undoEngineEdits } from './request-headers.ts';
import { relayEarlyHints, relayResponse, statusLineProblem } from './response.ts';
import type { ResponseTransforms } from './response-transform.ts';
import type { RewriteSettings } from './rewrite.ts';
import type { Balancer } from './balancer.ts';
import { armTimeouts, type ExchangeTimeouts } from './timeouts.ts';
import type { TlsSettings } from './tls.ts';

// httpxy's server and its options, named through HPM's Plugin so httpxy stays an implementation detail.
type EngineServer = Parameters<Plugin<IncomingMessage, ServerResponse>>[0];
type ServerOptions = NonNullable<Parameters<EngineServer['web']>[2]>;

/** The one module that knows http-proxy-middleware and httpxy. */
export interface Engine {
  web(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

export interface EngineSettings {
  agents: UpstreamAgents;
  /** The proxy-wide TLS setting for https upstreams; a route's own replaces it. */
  tls: TlsSettings | undefined;
  changeOrigin: boolean;
  timeouts: ExchangeTimeouts;
  logger: Logger;
  rewrites: RewriteSettings;
  balancer: Balancer;
  settleUnreadBody: UnreadBodySettler;
  fail: FailureHandler;
  transforms: ResponseTransforms;
  /** A WebSocket is open: the client's socket and the upstream's. */
  onWebSocket: (req: IncomingMessage, exchange: Exchange, client: Duplex, upstream: Duplex) => void;
}

/**
 * httpxy's target for one request: the route's origin, and as its path the
 * whole request-target, already joined to the route's own path. With
 * `ignorePath` httpxy sends that path byte for byte: no `/` put before `*` or
 * before an absolute-form URL, no dot segments resolved. (A plain object
 * rather than a URL: a URL would normalise the path; and IPv6 hosts unbracketed,
 * as HPM does for URL targets.)
 */
export function upstreamTarget(target: URL, path: string) {
  const socketPath = socketPathOf(target);
  // Node connects to the socket and ignores host and port, which name the
  // Host that changeOrigin sends: `localhost`, as curl's --unix-socket does.
  if (socketPath !== undefined) return { protocol: 'http:', host: 'localhost', hostname: 'localhost', port: '', socketPath, pathname: path };
  let pathname = path;
  if (path !== '*') {
    const base = target.pathname.endsWith('/') ? target.pathname.slice(0, -1) : target.pathname;
    pathname = base + path;
    if (target.search) pathname = pathname.includes('?') ? pathname.replace('?', `${target.search}&`) : pathname + target.search;
  }
  const hostname = target.hostname.startsWith('[') ? target.hostname.slice(1, -1) : target.hostname;
  return { protocol: target.protocol, host: target.host, hostname, port: target.port, pathname };
}

/**
 * httpxy adds listeners to the client's response and request on every call
 * (`close` twice, `error` on each), bound to that call's upstream request. A
 * replay (a stale socket, each retry of a startup grace) calls it again on the
 * same response, so each call's listeners must go before the next. They are
 * appended, so where each call's run begins and ends in each list is enough
 * to find them: six counts on the exchange, nothing copied or captured on the
 * way of a request that is never replayed (docs/performance.md: a snapshot
 * of the lists per request cost 13% of the proxy's CPU).
 */
function removeAttemptListeners(req: IncomingMessage, res: ServerResponse, marks: readonly number[]): void {
  removeRun(res, 'close', marks[0]!, marks[1]!);
  removeRun(res, 'error', marks[2]!, marks[3]!);
  removeRun(req, 'error', marks[4]!, marks[5]!);
}

function removeRun(emitter: IncomingMessage | ServerResponse, event: string, from: number, to: number): void {
  for (const listener of emitter.rawListeners(event).slice(from, to)) emitter.removeListener(event, listener as () => void);
}

export function createEngine({ agents, tls: proxyTls, changeOrigin, timeouts, logger, rewrites, balancer, settleUnreadBody, fail, transforms, onWebSocket }: EngineSettings): Engine {
  /**
   * This request's options for httpxy: routing and header decisions were made
   * in admission; here they are handed over with the connection pool and,
   * for a counted or held body, the stream httpxy must read instead of req.
   */
  function requestOptions(req: IncomingMessage, isUpgrade: boolean): ServerOptions {
    const exchange = exchangeOf(req)!;
    // A fresh connection for a replay (other pooled sockets may be as stale)
    // and for an upgrade: an upgraded socket is never pooled again, so reusing
    // one only risks the stale-socket race.
    const fresh = exchange.retried || isUpgrade;
    const upstream = exchange.upstream!;
    const tls = upstream.protocol === 'https:' ? (exchange.route!.tls ?? proxyTls) : undefined;
    let buffer: BodySource | undefined;
    if (exchange.deferBody) buffer = exchange.bodyGate = new PassThrough();
    else buffer = exchange.bodySource;
    return {
      target: upstreamTarget(upstream, exchange.target!.path) as ServerOptions['target'],
      agent: fresh ? agents.freshAgentFor(upstream) : agents.agentFor(upstream, tls),
      headers: exchange.headerPlan!.set,
      ignorePath: true,
      changeOrigin: exchange.route!.changeOrigin ?? changeOrigin,
      // httpxy only pipes it to the upstream request.
      ...(buffer && { buffer: buffer as Stream }),
      // httpxy builds the outgoing request on `ssl`, so each request gets its own copy;
      // it sets rejectUnauthorized from `secure`. Pooled or fresh, the connection gets them.
      ...(tls && { ssl: { ...tls.connect }, secure: tls.rejectUnauthorized }),
    };
  }

  // HPM builds the engine: its configuration check, and httpxy's server with
  // our plugin instead of every default one (its error page maps ECONNREFUSED
  // to 504 and echoes host and path; its logger prints the upstream address).
  // Per request the proxy calls that server itself: HPM's per-request layer
  // (path filter, options copy, router, path rewrite) has nothing to decide
  // here, and cost more CPU than the guards (docs/performance.md).
  let server: EngineServer | undefined;
  createProxyMiddleware<IncomingMessage, ServerResponse>({
    ejectPlugins: true,
    // HPM wants a target or a router; requests never go through its routing.
    router: {},
    plugins: [
      (proxyServer) => {
        server = proxyServer;
        wireEngineEvents(proxyServer);
      },
    ],
  });
  const engineServer = server!;

  /**
   * httpxy's own response handling is replaced (see relayResponse): it
   * destroys the client's connection when the upstream's body ends early,
   * even before a byte reached the client, and writes whatever status line the
   * upstream sent.
   */
  function takeOverResponse(proxyReq: ClientRequest, req: IncomingMessage, res: ServerResponse, exchange: Exchange): void {
    const failHere = (err: unknown) => fail(err, req, res);
    proxyReq.removeAllListeners('response');
    proxyReq.on('response', (proxyRes) => relayResponse(proxyRes, { req, res, exchange, proxyReq, rewrites, settleUnreadBody, fail: failHere, transforms }));
    proxyReq.on('information', (info) => relayEarlyHints(info, req, res));
    // Node leaves a request hanging on a 101 it did not ask for unless someone listens.
    proxyReq.on('upgrade', (_proxyRes, socket) => {
      exchange.upstreamResponded = true;
      socket.destroy();
      failHere(new UpstreamProtocolError('101 Switching Protocols to a request that asked for no upgrade'));
    });
    // The last word: a request that closes with no response and no error
    // would otherwise leave its client waiting forever.
    proxyReq.on('close', () => {
      if (exchange.upstreamResponded || exchange.proxyReq !== proxyReq) return;
      failHere(new UpstreamProtocolError('upstream connection closed with no response'));
    });
  }

  /**
   * Once the upstream connection is up: its health is good again, and a
   * deferred body starts to flow. Until then a connect failure has consumed
   * nothing, so the request can go again.
   */
  function whenConnected(proxyReq: ClientRequest, req: IncomingMessage, exchange: Exchange): void {
    const upstream = exchange.upstream!;
    const gate = exchange.bodyGate;
    const connected = () => {
      balancer.succeeded(upstream);
      if (gate) (exchange.bodySource ?? req).pipe(gate);
    };
    const socket = proxyReq.socket!;
    // A pooled socket is up already.
    if (!socket.connecting) {
      if (gate) connected();
      return;
    }
    socket.once('connect', connected);
  }

  function wireEngineEvents(server: EngineServer): void {
    server.on('proxyReq', (proxyReq, req, res) => {
      const exchange = exchangeOf(req)!;
      exchange.proxyReq = proxyReq;
      applyRemovals(proxyReq, exchange.headerPlan!);
      undoEngineEdits(req, exchange.headerPlan!);
      // Before the clocks: taking over drops every 'response' listener there is so far.
      takeOverResponse(proxyReq, req, res, exchange);
      armTimeouts(proxyReq, timeouts, exchange.route!.timeouts);
      whenConnected(proxyReq, req, exchange);
    });
    server.on('proxyReqWs', (proxyReq, req, socket) => {
      const exchange = exchangeOf(req)!;
      exchange.proxyReq = proxyReq;
      applyRemovals(proxyReq, exchange.headerPlan!);
      armTimeouts(proxyReq, timeouts, exchange.route!.timeouts);
      // Ahead of httpxy, which writes a refusal's status line to the socket as it came.
      const refused = (proxyRes: IncomingMessage) => {
        exchange.upstreamResponded = true;
        const problem = statusLineProblem(proxyRes);
        if (!problem) {
          exchange.clientHeadWritten = true;
          return;
        }
        proxyRes.on('error', () => {});
        proxyReq.destroy();
        fail(new UpstreamProtocolError(problem), req, socket);
      };
      proxyReq.prependListener('response', refused);
      proxyReq.once('upgrade', (_proxyRes, upstreamSocket) => {
        // The request stays reachable while the WebSocket is open (see
        // armTimeouts): a listener for a response that cannot come goes.
        proxyReq.removeListener('response', refused);
        // The headers went out: the plan is done with (httpxy keeps the `set` it was given).
        exchange.headerPlan = undefined;
        exchange.upstreamResponded = true;
        exchange.clientHeadWritten = true;
        onWebSocket(req, exchange, socket, upstreamSocket);
      });
    });
    server.on('error', (err, req, res) => {
      if (req) fail(err, req, res);
    });
    // httpxy's name for "the client hung up while we were proxying".
    server.on('econnreset', (_err, req) => {
      const exchange = exchangeOf(req);
      if (exchange) logger.debug('client closed request', requestFields(req, exchange));
    });
  }

  return {
    web(req, res) {
      const exchange = exchangeOf(req)!;
      // A replay: the attempt before it has failed, and its listeners go with it.
      if (exchange.attemptListeners) removeAttemptListeners(req, res, exchange.attemptListeners);
      const closeFrom = res.listenerCount('close');
      const errorFrom = res.listenerCount('error');
      const reqErrorFrom = req.listenerCount('error');
      // Failures reach the 'error' listener above; the promise only says the exchange is over.
      void engineServer.web(req, res, requestOptions(req, false));
      exchange.attemptListeners = [closeFrom, res.listenerCount('close'), errorFrom, res.listenerCount('error'), reqErrorFrom, req.listenerCount('error')];
    },
    upgrade(req, socket, head) {
      void engineServer.ws(req, socket as Socket, requestOptions(req, true), head);
    },
  };
}
