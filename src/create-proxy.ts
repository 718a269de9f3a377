import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import { classifyUpstreamError } from './classify.ts';
import { InternalProxyError, MissingHostError, ProxyError } from './errors.ts';
import { beginExchange, clientIsGone, exchangeOf, isResponse, type ClientSide, type Exchange, type NextFunction } from './exchange.ts';
import { checkDeclaredLength, createBodyCounter, hasUndeclaredBody } from './guards/body-limit.ts';
import { createRateLimitGuard } from './guards/rate-limit.ts';
import { createDefaultLogger, describeCause, logProxyError, requestFields, type Logger } from './logging.ts';
import { resolveOptions, type ProxyOptions } from './options.ts';
import { assignRequestId } from './request-id.ts';
import { buildErrorResponse, sendErrorResponse, writeErrorResponseToSocket } from './respond.ts';
import { normalizeHost } from './routes/host.ts';
import { createUpstreamAgents } from './upstream/agent.ts';
import { stripHopByHopHeaders, stripHopByHopRequestHeaders } from './upstream/hop-by-hop.ts';
import { isSafeToRetry } from './upstream/retry.ts';
import { armTimeouts } from './upstream/timeouts.ts';

/** An Express (or plain `node:http`) request handler, plus the WebSocket and shutdown hooks. */
export interface HonestProxy {
  (req: IncomingMessage, res: ServerResponse, next?: NextFunction): void;
  /**
   * For `server.on('upgrade', proxy.upgrade)`: the same routes and guards as
   * HTTP. Upgrades bypass Express, so `req.url` arrives unstripped by any mount path.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Destroys the proxy's own upstream connection pool, so a server can shut down cleanly. */
  close(): void;
}

/**
 * Creates the proxy middleware.
 *
 * A request reads top to bottom: Host -> rate limit -> route -> body limit -> forward.
 * Whatever fails along the way becomes a ProxyError with its own status;
 * whatever the upstream answers goes to the client untouched.
 *
 * @example
 * ```ts
 * app.use('/preview', createProxy({ routes: { 'app.localhost': 'http://127.0.0.1:3000' } }));
 * ```
 */
export function createProxy(options: ProxyOptions): HonestProxy {
  const config = resolveOptions(options);
  const logger: Logger = config.logger ?? createDefaultLogger();
  const agents = createUpstreamAgents(config.agent);
  const rateLimitGuard = config.rateLimit === false ? undefined : createRateLimitGuard(config.rateLimit, logger);

  const engine = createProxyMiddleware<IncomingMessage, ServerResponse>({
    // Every default plugin goes: HPM's error page maps ECONNREFUSED to 504 and
    // echoes host and path, and its logger prints the upstream address.
    ejectPlugins: true,
    // Routing is decided before HPM runs; the router only hands over the result,
    // with this request's connection pool and, for a counted body, the stream
    // httpxy must read instead of req.
    router: (req, res, perRequest) => {
      const exchange = exchangeOf(req)!;
      const target = exchange.route!.target;
      // A fresh connection for a replay (other pooled sockets may be as stale)
      // and for an upgrade (HPM passes no res): an upgraded socket is never
      // pooled again, so reusing one only risks the stale-socket race.
      const fresh = exchange.retried || res === undefined;
      perRequest.agent = fresh ? false : target.protocol === 'https:' ? agents.https : agents.http;
      if (exchange.bodySource) perRequest.buffer = exchange.bodySource;
      return target;
    },
    changeOrigin: config.changeOrigin,
    plugins: [wireEngineEvents],
  });

  // httpxy's server type, named through HPM's Plugin so httpxy stays an implementation detail.
  function wireEngineEvents(server: Parameters<Plugin<IncomingMessage, ServerResponse>>[0]): void {
    server.on('proxyReq', (proxyReq, req) => {
      const exchange = exchangeOf(req);
      if (exchange) exchange.proxyReq = proxyReq;
      armTimeouts(proxyReq, config.timeouts);
    });
    server.on('proxyReqWs', (proxyReq, req) => {
      const exchange = exchangeOf(req);
      if (exchange) {
        exchange.proxyReq = proxyReq;
        // From the 101, or the upstream's refusal, on: the client has its answer.
        const started = () => (exchange.responseStarted = true);
        proxyReq.once('upgrade', started);
        proxyReq.once('response', started);
      }
      armTimeouts(proxyReq, config.timeouts);
    });
    server.on('proxyRes', (proxyRes, req) => {
      const exchange = exchangeOf(req);
      if (exchange) exchange.responseStarted = true;
      stripHopByHopHeaders(proxyRes.headers);
    });
    server.on('error', (err, req, res) => {
      if (req) handleFailure(err, req, res as ClientSide | undefined);
    });
    // httpxy's name for "the client hung up while we were proxying".
    server.on('econnreset', (_err, req) => {
      const exchange = exchangeOf(req);
      if (exchange) logger.debug('client closed request', requestFields(req, exchange));
    });
  }

  function handleFailure(err: unknown, req: IncomingMessage, client: ClientSide | undefined): void {
    const exchange = exchangeOf(req) ?? beginExchange(req, undefined, undefined);
    if (exchange.failed) return;

    // The keep-alive race of seed 000: the pooled socket was already closed by
    // the upstream. Replaying once on a new connection is invisible and safe.
    if (!exchange.retried && !exchange.responseStarted && isResponse(client) && !clientIsGone(client) && isSafeToRetry(err, exchange.proxyReq, req)) {
      exchange.retried = true;
      exchange.proxyReq = undefined;
      logger.debug('stale pooled connection; retrying on a fresh one', requestFields(req, exchange));
      void engine(req, client, (nextErr) => {
        if (nextErr) handleFailure(nextErr, req, client);
      });
      return;
    }

    exchange.failed = true;
    const error = classifyUpstreamError(err);

    if (exchange.responseStarted || (isResponse(client) && client.headersSent)) {
      // Too late for a status: cut the connection so the client cannot take a
      // truncated body for a complete one (Go's ReverseProxy does the same).
      logProxyError(logger, error, req, exchange, { afterResponseStarted: true });
      client?.destroy();
      return;
    }
    if (clientIsGone(client)) {
      logger.debug('client closed request', { ...requestFields(req, exchange), code: error.code });
      return;
    }
    logProxyError(logger, error, req, exchange);
    const response = buildErrorResponse(error, req, config, exchange.requestId);
    if (!isResponse(client)) {
      writeErrorResponseToSocket(client!, response);
      return;
    }
    if (config.onError === 'next' && exchange.next) {
      exchange.next(error);
      return;
    }
    try {
      sendErrorResponse(client, response);
    } catch (err) {
      // E.g. a header value Node refuses, from an error a resolver built. We run
      // inside an event handler: a throw here would take the process down.
      logger.error('could not write the error response', { ...requestFields(req, exchange), cause: describeCause(err, true) });
      client.destroy();
    }
  }

  /** Everything between the request arriving and the engine taking over: guards and routing. */
  async function admit(req: IncomingMessage, res: ServerResponse, exchange: Exchange, isUpgrade: boolean): Promise<void> {
    const host = normalizeHost(req.headers.host);
    if (!host) throw new MissingHostError(req.headers.host ? { cause: 'invalid Host header' } : undefined);
    exchange.host = host;

    if (rateLimitGuard) await rateLimitGuard(req, res);

    try {
      exchange.route = await config.resolveRoute(req, host);
    } catch (err) {
      throw err instanceof ProxyError ? err : new InternalProxyError('route resolver failed', { cause: err });
    }

    // Node already answered `100 Continue` to the client; an upstream's interim
    // response would have nowhere to go (nginx drops Expect the same way).
    delete req.headers.expect;
    stripHopByHopRequestHeaders(req.headers, isUpgrade);
  }

  /** True (after a debug record) when the client left while we were still deciding. */
  function leftEarly(req: IncomingMessage, client: ClientSide, exchange: Exchange): boolean {
    const gone = clientIsGone(client);
    if (gone) logger.debug('client closed request', requestFields(req, exchange));
    return gone;
  }

  /**
   * A declared body over the limit is refused before anything is read; a
   * chunked one is counted on its way, and crossing the limit aborts the
   * upstream request so the upstream never takes a truncated body as whole.
   */
  function limitBody(req: IncomingMessage, res: ServerResponse, exchange: Exchange): void {
    const limit = exchange.route!.bodyLimit ?? config.bodyLimit;
    if (limit === false) return;
    checkDeclaredLength(req, limit);
    if (!hasUndeclaredBody(req)) return;
    const counter = createBodyCounter(limit);
    counter.once('error', (err) => {
      req.unpipe(counter);
      exchange.proxyReq?.destroy(err);
      handleFailure(err, req, res);
    });
    exchange.bodySource = req.pipe(counter);
  }

  async function forward(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
    await admit(req, res, exchange, false);
    if (leftEarly(req, res, exchange)) return;
    limitBody(req, res, exchange);
    res.removeHeader('x-powered-by');
    await engine(req, res, (err) => {
      if (err) handleFailure(err, req, res);
    });
  }

  async function forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, exchange: Exchange): Promise<void> {
    // A real (unsent) ServerResponse holds the headers the limiter sets; they
    // reach the client only through a RateLimitedError's own headers.
    await admit(req, new http.ServerResponse(req), exchange, true);
    if (leftEarly(req, socket, exchange)) return;
    engine.upgrade(req, socket as Socket, head);
  }

  /** Every request, HTTP or upgrade, starts here: its id, then its state. */
  function open(req: IncomingMessage, next: NextFunction | undefined): Exchange {
    const requestId = config.requestIdHeader === false ? undefined : assignRequestId(req, config.requestIdHeader);
    return beginExchange(req, next, requestId);
  }

  const middleware = function honestProxy(req: IncomingMessage, res: ServerResponse, next?: NextFunction): void {
    const exchange = open(req, next);
    forward(req, res, exchange).catch((err: unknown) => handleFailure(err, req, res));
  };

  return Object.assign(middleware, {
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      const exchange = open(req, undefined);
      // A client that resets mid-handshake must not become an unhandled 'error';
      // it is the client's doing, not the upstream's.
      socket.on('error', (err: NodeJS.ErrnoException) =>
        logger.debug('client connection error', { ...requestFields(req, exchange), code: err.code }),
      );
      forwardUpgrade(req, socket, head, exchange).catch((err: unknown) => handleFailure(err, req, socket));
    },
    close(): void {
      if (!agents.owned) return;
      agents.http.destroy();
      agents.https.destroy();
    },
  });
}
