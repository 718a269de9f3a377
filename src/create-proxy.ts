import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createAdmission } from './admission.ts';
import { comesAfterLastRequest, markLastRequest } from './client/connection.ts';
import { isWebSocketUpgrade, responseOnUpgradeSocket } from './client/upgrade.ts';
import { BadRequestError } from './errors.ts';
import { beginExchange, clientIsGone, type ClientSide, type Exchange, type NextFunction } from './exchange.ts';
import { createFailureHandler } from './failure.ts';
import { limitBody } from './guards/body-limit.ts';
import { createDefaultLogger, requestFields, type Logger } from './logging.ts';
import { resolveOptions, type ProxyOptions } from './options.ts';
import { readRequestId } from './request/request-id.ts';
import { createUpstreamAgents } from './upstream/agent.ts';
import { createEngine } from './upstream/engine.ts';

/** An Express (or plain `node:http`) request handler, plus the WebSocket and shutdown hooks. */
export interface HonestProxy {
  (req: IncomingMessage, res: ServerResponse, next?: NextFunction): void;
  /**
   * For `server.on('upgrade', proxy.upgrade)`: the same routes and guards as
   * HTTP. Upgrades bypass Express, so `req.url` arrives unstripped by any mount
   * path. An upgrade to anything but WebSocket is served as plain HTTP/1.1.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Destroys the proxy's own upstream connection pool, so a server can shut down cleanly. */
  close(): void;
}

/**
 * Creates the proxy middleware.
 *
 * A request goes through named stages: open (request id) -> admit (well-formed?
 * rate limit, route, upstream headers; src/admission.ts) -> body limit ->
 * engine (forward; the upstream's response relayed; src/upstream/) and, from
 * any of them, handleFailure (src/failure.ts). Whatever fails along the way
 * becomes a ProxyError with its own status; whatever the upstream answers goes
 * to the client untouched.
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
  const admit = createAdmission(config, logger);
  const handleFailure = createFailureHandler({ config, logger, replay: (req, res) => engine.web(req, res as ServerResponse) });
  const engine = createEngine({ agents, changeOrigin: config.changeOrigin, timeouts: config.timeouts, logger, fail: handleFailure });

  /** Every request, HTTP or upgrade, starts here: its id, then its state. */
  function open(req: IncomingMessage, next: NextFunction | undefined): Exchange {
    const requestId = config.requestIdHeader === false ? undefined : readRequestId(req, config.requestIdHeader).id;
    return beginExchange(req, next, requestId);
  }

  /**
   * True (after a debug record) when the request must not be forwarded after
   * all: the client left while admission was awaiting, or the request came on
   * a connection after its last request and will never be answered.
   */
  function notToForward(req: IncomingMessage, client: ClientSide, exchange: Exchange): boolean {
    if (clientIsGone(req, client)) {
      logger.debug('client closed request', requestFields(req, exchange));
      return true;
    }
    if (comesAfterLastRequest(req)) {
      logger.debug('request after the last one on its connection; not forwarded', requestFields(req, exchange));
      return true;
    }
    return false;
  }

  async function forward(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
    if (!res.shouldKeepAlive) markLastRequest(req);
    await admit(req, res, exchange, false);
    if (notToForward(req, res, exchange)) return;
    exchange.bodySource = limitBody(req, exchange.route!.bodyLimit ?? config.bodyLimit, (err) => {
      exchange.proxyReq?.destroy(err);
      handleFailure(err, req, res);
    });
    res.removeHeader('x-powered-by');
    engine.web(req, res);
  }

  async function forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, exchange: Exchange): Promise<void> {
    // A real (unsent) ServerResponse holds the headers the limiter sets; they
    // reach the client only through a RateLimitedError's own headers.
    await admit(req, new http.ServerResponse(req), exchange, true);
    if (notToForward(req, socket, exchange)) return;
    engine.upgrade(req, socket, head);
  }

  const middleware = function honestProxy(req: IncomingMessage, res: ServerResponse, next?: NextFunction): void {
    const exchange = open(req, next);
    forward(req, res, exchange).catch((err: unknown) => handleFailure(err, req, res));
  };

  /** An upgrade the proxy declines is answered as plain HTTP; Node has parsed no body for it, so none may come. */
  function declineUpgrade(req: IncomingMessage, socket: Duplex, exchange: Exchange): void {
    const res = responseOnUpgradeSocket(req, socket);
    const length = req.headers['content-length'];
    if ((length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined) {
      handleFailure(new BadRequestError('a body on an upgrade to something other than WebSocket'), req, res);
      return;
    }
    forward(req, res, exchange).catch((err: unknown) => handleFailure(err, req, res));
  }

  return Object.assign(middleware, {
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      const exchange = open(req, undefined);
      // A client that resets mid-handshake must not become an unhandled 'error';
      // it is the client's doing, not the upstream's.
      socket.on('error', (err: NodeJS.ErrnoException) =>
        logger.debug('client connection error', { ...requestFields(req, exchange), code: err.code }),
      );
      if (!isWebSocketUpgrade(req)) {
        declineUpgrade(req, socket, exchange);
        return;
      }
      forwardUpgrade(req, socket, head, exchange).catch((err: unknown) => handleFailure(err, req, socket));
    },
    close(): void {
      if (!agents.owned) return;
      agents.http.destroy();
      agents.https.destroy();
    },
  });
}
