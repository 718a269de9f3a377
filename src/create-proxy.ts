import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createAdmission } from './admission.ts';
import { createUnreadBodySettler } from './client/body.ts';
import { forgetRequestOrder } from './client/connection.ts';
import { createLingeringClose } from './client/lingering-close.ts';
import { takeUpgrade } from './client/upgrade.ts';
import { createUpgradeEntries } from './client/upgrade-entries.ts';
import { beginExchange, clientIsGone, exchangeOf, type ClientSide, type Exchange, type NextFunction } from './exchange.ts';
import { createFailureHandler } from './failure.ts';
import { createForwarding } from './forwarding.ts';
import { createShutdown, type CloseOptions } from './lifecycle/shutdown.ts';
import { createTracker, trackExchange, trackLingering, trackWebSocket, type OpenWebSocket } from './lifecycle/tracker.ts';
import { createDefaultLogger, requestFields, type Logger } from './logging.ts';
import { ACTIVITY, createActivity } from './observe/activity.ts';
import { createFailureLog } from './observe/failure-log.ts';
import { createObserver } from './observe/observer.ts';
import { observeRouteCache } from './observe/route-cache-metrics.ts';
import { resolveOptions, type ProxyOptions } from './options.ts';
import { readRequestId } from './request/request-id.ts';
import type { ProxyRequest } from './routes/table.ts';
import { createUpstreamAgents } from './upstream/agent.ts';
import { createBalancer } from './upstream/balancer.ts';
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
   * requests (and lingering closes) may finish until `timeout` (default 5 s)
   * and are then aborted, and the proxy's own upstream pool is destroyed. Resolves when nothing of
   * the proxy's is left open.
   */
  close(options?: CloseOptions): Promise<void>;
}

/**
 * Creates the proxy middleware.
 *
 * A request goes through named stages: open (request id) -> admit (well-formed?
 * rate limit, route, upstream, headers; src/admission.ts) -> body limit
 * (src/forwarding.ts) -> engine (forward, the upstream's response relayed;
 * src/upstream/) and, from any of them, handleFailure (src/failure.ts).
 * Upgrades enter through src/client/upgrade-entries.ts and take the same stages. Whatever fails along the way
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
  const activity = config.activity && createActivity(config.activity, logger);
  const observer = createObserver(config.metrics, activity, config.routeKey);
  if (config.metrics && config.routeCache) observeRouteCache(config.metrics, config.routeCache);
  const balancer = createBalancer(config.passiveHealth, config.balance, (upstream) => {
    observer.ejected(upstream);
    logger.warn('upstream taken out of rotation after failed connects', { upstream, forMs: config.passiveHealth.failTimeout });
  });
  const admit = createAdmission(config, logger, balancer, () => tracker.draining);
  const settleUnreadBody = createUnreadBodySettler(createLingeringClose(config.lingeringClose, (socket) => trackLingering(tracker, socket)));
  const failureLog = createFailureLog(logger, config.foldRepeatedFailures);
  const handleFailure = createFailureHandler({ config, logger, failureLog, balancer, observer, settleUnreadBody, replay });
  const engine = createEngine({
    agents,
    tls: config.tls,
    changeOrigin: config.changeOrigin,
    timeouts: config.timeouts,
    logger,
    rewrites: config,
    balancer,
    settleUnreadBody,
    fail: handleFailure,
    transforms: { wide: config.transformResponse, logger },
    onWebSocket(req, exchange, client, upstream) {
      forgetRequestOrder(client);
      observer.webSocketOpened(req, exchange, client);
      trackWebSocket(tracker, { client, upstream, req, exchange }, webSocketClosed);
    },
  });

  /** One function for every WebSocket's close: a closure per WebSocket would live as long as it. */
  function webSocketClosed({ req, exchange, client }: OpenWebSocket & { req: IncomingMessage; exchange: Exchange }): void {
    observer.webSocketClosed(req, exchange, client);
  }

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

  const forwarding = createForwarding({ config, logger, admit, engine, balancer, fail: handleFailure, observer });

  function proxyWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, exchange: Exchange): void {
    forwarding.webSocket(req, socket, head, exchange).catch((err: unknown) => handleFailure(err, req, socket));
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
    trackExchange(tracker, res);
    observer.requestStarted(req, res, exchange);
    forwarding.http(req, res, exchange).catch((err: unknown) => handleFailure(err, req, res));
  };

  const upgrades = createUpgradeEntries({
    logger,
    fail: handleFailure,
    middleware,
    webSocket: (req, socket, head) => proxyWebSocket(req, socket, head, open(req, undefined)),
  });

  const shutdown = createShutdown(tracker, agents, logger);
  const close = (options?: CloseOptions) => {
    activity?.stop();
    // The failures of the last requests may still be folded: their counts are written once nothing is in flight.
    return shutdown(options).finally(() => failureLog.flush());
  };
  return Object.assign(middleware, { ...upgrades, close, [ACTIVITY]: activity });
}
