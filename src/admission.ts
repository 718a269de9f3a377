import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { bodyWasConsumed, consumedBodyError, reserializeBody } from './client/consumed-body.ts';
import { declaresBody } from './request/body.ts';
import { InternalProxyError, ProxyError, ShuttingDownError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { createRateLimitGuard } from './guards/rate-limit.ts';
import type { Logger } from './logging.ts';
import type { ResolvedOptions } from './options.ts';
import { readRequestTarget } from './request/validate.ts';
import type { Balancer } from './upstream/balancer.ts';
import { mayRetryConnect } from './upstream/connect-retry.ts';
import { trustFor } from './upstream/forwarded.ts';
import { planUpstreamHeaders, type UpstreamHeaderPlan } from './upstream/request-headers.ts';
import { shapeRequest } from './upstream/request-shaping.ts';
import { routeShaping } from './upstream/shaping-options.ts';

/** Resolves when the request may be forwarded; rejects with the ProxyError that refuses it. */
export type Admission = (req: IncomingMessage, res: ServerResponse, exchange: Exchange, isUpgrade: boolean) => Promise<void>;

/**
 * A body an earlier middleware already read: refused (500, nothing sent
 * upstream), or with `consumedBody: 'reserialize'` replaced by `req.body`
 * encoded again, with its own Content-Length.
 */
function replaceConsumedBody(req: IncomingMessage, exchange: Exchange, plan: UpstreamHeaderPlan, mode: ResolvedOptions['consumedBody']): void {
  if (!bodyWasConsumed(req)) return;
  if (mode === 'error') throw consumedBodyError();
  const body = reserializeBody(req);
  exchange.replacementBody = body;
  exchange.bodySource = Readable.from([body]);
  plan.set['content-length'] = String(body.length);
  // The parser decoded the body: what goes upstream is plain and has a length.
  for (const name of ['transfer-encoding', 'content-encoding']) if (req.headers[name] !== undefined) plan.remove.push(name);
}

/**
 * Everything between a request arriving and the engine taking over, in order:
 * is it well-formed, may this client send it now, where does it go, and what
 * does the upstream get as headers (and body, when a parser took it). HTTP and
 * WebSocket upgrades alike. No stage opens an upstream connection.
 */
export function createAdmission(config: ResolvedOptions, logger: Logger, balancer: Balancer, draining: () => boolean): Admission {
  const rateLimitGuard = config.rateLimit === false ? undefined : createRateLimitGuard(config.rateLimit, logger, config.trust);
  const { requestIdHeader } = config;
  config.routeCache?.attach(logger);

  return async function admit(req, res, exchange, isUpgrade) {
    if (draining()) throw new ShuttingDownError();
    exchange.target = readRequestTarget(req);

    if (rateLimitGuard) await rateLimitGuard(req, res);

    try {
      // Awaited even when known at once (a record, a cache hit): a pipelined
      // request behind one refused must not be admitted before that refusal
      // has marked its connection's last request.
      exchange.route = await config.resolveRoute(req, exchange.target.host);
    } catch (err) {
      throw err instanceof ProxyError ? err : new InternalProxyError('route resolver failed', { cause: err });
    }
    const route = exchange.route;
    exchange.trust = trustFor(req, config.trust);
    exchange.upstream = balancer.pick(route, req, exchange);
    // Counted until the client side closes: the response, or the WebSocket's socket.
    if (exchange.countedAgainst) (isUpgrade ? req.socket : res).once('close', () => balancer.release(exchange));
    const clientsId = requestIdHeader === false ? undefined : req.headers[requestIdHeader];
    exchange.headerPlan = planUpstreamHeaders(req, {
      isUpgrade,
      requestIdHeader,
      newRequestId: clientsId === exchange.requestId ? undefined : exchange.requestId,
      forwarded: { mode: route.forwarded ?? config.forwarded, trust: exchange.trust, via: config.via },
    });
    // Before shaping, so removeQuery sees the path the upstream will get.
    const pathRewrite = route.pathRewrite ?? config.pathRewrite;
    if (pathRewrite && exchange.target.path !== '*') exchange.target.path = pathRewrite(exchange.target.path, req);
    // What the upstream may not see (the platform's credentials), HTTP and WebSocket alike.
    const shaping = route.shaping ? routeShaping(route.shaping, config.requestShaping) : config.requestShaping;
    if (shaping) await shapeRequest(req, exchange, shaping);
    if (isUpgrade) return;
    replaceConsumedBody(req, exchange, exchange.headerPlan, config.consumedBody);
    // A body that may have to go to another upstream, or wait for one to boot, is held until connected.
    exchange.deferBody = declaresBody(req) && mayRetryConnect(route, config.startupGrace);
  };
}
