import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createAdmission } from './admission.ts';
import { comesAfterLastRequest, markLastRequest } from './client/connection.ts';
import { declaresBody, holdUpgrade, isUnderPath, isWebSocketUpgrade, responseOnUpgradeSocket, takeUpgrade } from './client/upgrade.ts';
import { BadRequestError } from './errors.ts';
import { beginExchange, clientIsGone, exchangeOf, type ClientSide, type Exchange, type NextFunction } from './exchange.ts';
import { createFailureHandler } from './failure.ts';
import { limitBody } from './guards/body-limit.ts';
import { createDefaultLogger, requestFields, type Logger } from './logging.ts';
import { ProxyOptionsError, resolveOptions, type ProxyOptions } from './options.ts';
import type { ProxyRequest } from './routes/table.ts';
import { readRequestId } from './request/request-id.ts';
import { createShutdown, type CloseOptions } from './lifecycle/shutdown.ts';
import { createTracker, trackExchange, trackWebSocket } from './lifecycle/tracker.ts';
import { createObserver } from './observe/observer.ts';
import { createUpstreamAgents } from './upstream/agent.ts';
import { createBalancer } from './upstream/balancer.ts';
import { awaitConnectableUpstream } from './upstream/connect-retry.ts';
import { createEngine } from './upstream/engine.ts';

/** An Express (or plain `node:http`) request handler, plus the WebSocket and shutdown hooks. */
export interface HonestProxy {
  (req: IncomingMessage, res: ServerResponse, next?: NextFunction): void;
  /**
   * For `server.on('upgrade', proxy.upgrade)` on a server of the proxy's own:
   * every upgrade gets the same routes and guards as HTTP, with `req.url` as
   * sent. An upgrade to anything but WebSocket is served as plain HTTP/1.1.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /**
   * For a proxy mounted in an Express app:
   * `server.on('upgrade', proxy.upgradeThrough(app, '/preview'))`. Upgrades at
   * or below `mountPath` go through the app like any request (its auth and
   * other middleware gate them, Express strips the mount path), and the proxy
   * takes the socket when the request reaches it. Upgrades elsewhere are left
   * alone for the app's own WebSocket server.
   */
  upgradeThrough(app: (req: IncomingMessage, res: ServerResponse) => void, mountPath: string): (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /**
   * Shuts the proxy down: new requests get 503 (`Connection: close`,
   * `Retry-After`), open WebSockets a close frame 1001 on both sides, in-flight
   * requests may finish until `timeout` (default 5 s) and are then aborted,
   * and the proxy's own upstream pool is destroyed. Resolves when nothing of
   * the proxy's is left open.
   */
  close(options?: CloseOptions): Promise<void>;
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
export function createProxy<Req extends IncomingMessage = ProxyRequest>(options: ProxyOptions<Req>): HonestProxy {
  const config = resolveOptions(options);
  const logger: Logger = config.logger ?? createDefaultLogger();
  const agents = createUpstreamAgents(config.agent);
  const tracker = createTracker();
  const observer = createObserver(config.metrics);
  const balancer = createBalancer(config.passiveHealth, (upstream) => {
    observer.ejected(upstream);
    logger.warn('upstream taken out of rotation after failed connects', { upstream, forMs: config.passiveHealth.failTimeout });
  });
  const admit = createAdmission(config, logger, balancer, () => tracker.draining);
  const handleFailure = createFailureHandler({ config, logger, balancer, observer, replay });
  const engine = createEngine({
    agents,
    changeOrigin: config.changeOrigin,
    timeouts: config.timeouts,
    logger,
    rewrites: config,
    balancer,
    fail: handleFailure,
    onWebSocket(req, exchange, client, upstream) {
      observer.webSocketOpened(req, exchange, client);
      trackWebSocket(tracker, { client, upstream }, () => observer.webSocketClosed(req, exchange, client));
    },
  });

  /** Sends a request again (a stale socket, a connect failure), unless its client left meanwhile. */
  function replay(req: IncomingMessage, client: ClientSide, delayMs: number): void {
    const again = () => {
      if (clientIsGone(req, client)) logger.debug('client closed request', requestFields(req, exchangeOf(req)!));
      else engine.web(req, client as ServerResponse);
    };
    if (delayMs === 0) again();
    else setTimeout(again, delayMs);
  }

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
    const limit = exchange.route!.bodyLimit ?? config.bodyLimit;
    const counted = limitBody(req, limit, exchange.replacementBody, (err) => {
      exchange.proxyReq?.destroy(err);
      handleFailure(err, req, res);
    });
    if (counted) exchange.bodySource = counted;
    res.removeHeader('x-powered-by');
    engine.web(req, res);
  }

  async function forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, exchange: Exchange): Promise<void> {
    // A real (unsent) ServerResponse holds the headers the limiter sets; they
    // reach the client only through a RateLimitedError's own headers.
    await admit(req, new http.ServerResponse(req), exchange, true);
    const grace = exchange.route!.startupGrace ?? config.startupGrace;
    if (grace > 0 || exchange.route!.targets.length > 1) await awaitConnectableUpstream(exchange, balancer, grace, config.timeouts.connect);
    if (notToForward(req, socket, exchange)) return;
    engine.upgrade(req, socket, head);
  }

  /**
   * Node leaves an upgrade's socket with no 'error' listener. A client that
   * resets mid-handshake is the client's doing: a debug record, never an
   * unhandled 'error' that takes the process down.
   */
  function watchUpgradeSocket(req: IncomingMessage, socket: Duplex): void {
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const exchange = exchangeOf(req);
      logger.debug('client connection error', { ...(exchange ? requestFields(req, exchange) : { method: req.method }), code: err.code });
    });
  }

  function proxyWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, exchange: Exchange): void {
    forwardUpgrade(req, socket, head, exchange).catch((err: unknown) => handleFailure(err, req, socket));
  }

  const middleware = function honestProxy(req: IncomingMessage, res: ServerResponse, next?: NextFunction): void {
    const exchange = open(req, next);
    // A WebSocket that came through the app (upgradeThrough): its socket is ours from here.
    const pending = takeUpgrade(req);
    if (pending) {
      res.detachSocket(pending.socket as Socket);
      proxyWebSocket(req, pending.socket, pending.head, exchange);
      return;
    }
    trackExchange(tracker, req, res);
    observer.requestStarted(req, res, exchange);
    forward(req, res, exchange).catch((err: unknown) => handleFailure(err, req, res));
  };

  /**
   * An upgrade the proxy declines (not WebSocket) is answered as plain HTTP.
   * Node parses no body on an upgrade request, so one that declares a body is
   * refused: there is no way to read it.
   */
  function declineUpgrade(req: IncomingMessage, socket: Duplex): ServerResponse | undefined {
    const res = responseOnUpgradeSocket(req, socket);
    if (!declaresBody(req)) return res;
    handleFailure(new BadRequestError('a body on an upgrade to something other than WebSocket'), req, res);
    return undefined;
  }

  return Object.assign(middleware, {
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      watchUpgradeSocket(req, socket);
      if (isWebSocketUpgrade(req)) {
        proxyWebSocket(req, socket, head, open(req, undefined));
        return;
      }
      const res = declineUpgrade(req, socket);
      if (res) middleware(req, res);
    },
    upgradeThrough(app: (req: IncomingMessage, res: ServerResponse) => void, mountPath: string) {
      if (typeof app !== 'function') throw new ProxyOptionsError(`upgradeThrough(app, mountPath): app must be the Express app (a function (req, res)); got ${typeof app}`);
      if (typeof mountPath !== 'string' || !mountPath.startsWith('/')) {
        throw new ProxyOptionsError(`upgradeThrough(app, mountPath): mountPath must be the path the proxy is mounted at, such as '/preview'; got ${JSON.stringify(mountPath)}`);
      }
      const prefix = mountPath.replace(/\/+$/, '');
      return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
        // Another path's upgrade belongs to someone else (the app's own WebSocket server): not a byte from us.
        if (!isUnderPath(req.url ?? '/', prefix)) return;
        watchUpgradeSocket(req, socket);
        if (isWebSocketUpgrade(req)) {
          holdUpgrade(req, { socket, head });
          app(req, responseOnUpgradeSocket(req, socket));
          return;
        }
        const res = declineUpgrade(req, socket);
        if (res) app(req, res);
      };
    },
    close: createShutdown(tracker, agents, logger),
  });
}
