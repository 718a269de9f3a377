import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import { classifyUpstreamError } from './classify.ts';
import { InternalProxyError, MissingHostError, ProxyError } from './errors.ts';
import { beginExchange, clientIsGone, exchangeOf, type Exchange, type NextFunction } from './exchange.ts';
import { createDefaultLogger, logProxyError, requestFields, type Logger } from './logging.ts';
import { resolveOptions, type ProxyOptions } from './options.ts';
import { assignRequestId } from './request-id.ts';
import { checkDeclaredLength, createBodyCounter, hasUndeclaredBody } from './guards/body-limit.ts';
import { createRateLimitGuard } from './guards/rate-limit.ts';
import { buildErrorResponse, sendErrorResponse } from './respond.ts';
import { normalizeHost } from './routes/host.ts';
import { stripHopByHopHeaders } from './upstream/hop-by-hop.ts';
import { armTimeouts } from './upstream/timeouts.ts';

/** An Express (or plain `node:http`) request handler. */
export interface HonestProxy {
  (req: IncomingMessage, res: ServerResponse, next?: NextFunction): void;
}

/**
 * Creates the proxy middleware.
 *
 * A request reads top to bottom: Host -> rate limit -> route -> body limit -> forward. Whatever fails along
 * the way becomes a ProxyError with its own status; whatever the upstream
 * answers goes to the client untouched.
 *
 * @example
 * ```ts
 * app.use('/preview', createProxy({ routes: { 'app.localhost': 'http://127.0.0.1:3000' } }));
 * ```
 */
export function createProxy(options: ProxyOptions): HonestProxy {
  const config = resolveOptions(options);
  const logger: Logger = config.logger ?? createDefaultLogger();
  const rateLimitGuard = config.rateLimit === false ? undefined : createRateLimitGuard(config.rateLimit, logger);

  const engine = createProxyMiddleware<IncomingMessage, ServerResponse>({
    // Every default plugin goes: HPM's error page maps ECONNREFUSED to 504 and
    // echoes host and path, and its logger prints the upstream address.
    ejectPlugins: true,
    // Routing is decided before HPM runs; the router only hands over the result
    // and, for a counted body, the stream httpxy must read instead of req.
    router: (req, _res, perRequest) => {
      const exchange = exchangeOf(req)!;
      if (exchange.bodySource) perRequest.buffer = exchange.bodySource;
      return exchange.route!.target;
    },
    changeOrigin: config.changeOrigin,
    plugins: [wireEngineEvents],
  });

  function wireEngineEvents(...[server]: Parameters<Plugin<IncomingMessage, ServerResponse>>): void {
    server.on('proxyReq', (proxyReq, req) => {
      const exchange = exchangeOf(req);
      if (exchange) exchange.proxyReq = proxyReq;
      armTimeouts(proxyReq, config.timeouts);
    });
    server.on('proxyRes', (proxyRes, req) => {
      const exchange = exchangeOf(req);
      if (exchange) exchange.responseStarted = true;
      stripHopByHopHeaders(proxyRes.headers);
    });
    server.on('error', (err, req, res) => {
      if (req) handleFailure(err, req, res as ServerResponse | Socket | undefined);
    });
    // httpxy's name for "the client hung up while we were proxying".
    server.on('econnreset', (_err, req) => {
      const exchange = exchangeOf(req);
      if (exchange) logger.debug('client closed request', requestFields(req, exchange));
    });
  }

  function handleFailure(err: unknown, req: IncomingMessage, res: ServerResponse | Socket | undefined): void {
    const exchange = exchangeOf(req) ?? beginExchange(req, undefined, undefined);
    if (exchange.failed) return;
    exchange.failed = true;
    const error = classifyUpstreamError(err);
    const response = res && 'writeHead' in res ? res : undefined;

    if (exchange.responseStarted || response?.headersSent) {
      // Too late for a status: cut the connection so the client cannot take a
      // truncated body for a complete one (Go's ReverseProxy does the same).
      logProxyError(logger, error, req, exchange, { afterResponseStarted: true });
      response?.destroy();
      return;
    }
    if (clientIsGone(response)) {
      logger.debug('client closed request', { ...requestFields(req, exchange), code: error.code });
      return;
    }
    logProxyError(logger, error, req, exchange);
    if (config.onError === 'next' && exchange.next) {
      exchange.next(error);
      return;
    }
    sendErrorResponse(response!, buildErrorResponse(error, req, config, exchange.requestId));
  }

  async function forward(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
    const host = normalizeHost(req.headers.host);
    if (!host) throw new MissingHostError(req.headers.host ? { cause: 'invalid Host header' } : undefined);
    exchange.host = host;

    if (rateLimitGuard) await rateLimitGuard(req, res);

    try {
      exchange.route = await config.resolveRoute(req, host);
    } catch (err) {
      throw err instanceof ProxyError ? err : new InternalProxyError('route resolver failed', { cause: err });
    }
    exchange.upstream = exchange.route.target.origin;

    const bodyLimit = exchange.route.bodyLimit ?? config.bodyLimit;
    if (bodyLimit !== false) limitBody(req, res, exchange, bodyLimit);

    // Node already answered `100 Continue` to the client; an upstream's interim
    // response would have nowhere to go (nginx drops Expect the same way).
    delete req.headers.expect;
    res.removeHeader('x-powered-by');
    await engine(req, res, (err) => {
      if (err) handleFailure(err, req, res);
    });
  }

  /**
   * A declared body over the limit is refused before anything is read; a
   * chunked one is counted on its way, and crossing the limit aborts the
   * upstream request so the upstream never takes a truncated body as whole.
   */
  function limitBody(req: IncomingMessage, res: ServerResponse, exchange: Exchange, limit: number): void {
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

  return function honestProxy(req, res, next) {
    const requestId = config.requestIdHeader === false ? undefined : assignRequestId(req, config.requestIdHeader);
    const exchange = beginExchange(req, next, requestId);
    forward(req, res, exchange).catch((err: unknown) => handleFailure(err, req, res));
  };
}
