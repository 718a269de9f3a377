import type { IncomingMessage, ServerResponse } from 'node:http';
import { InternalProxyError, ProxyError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { createRateLimitGuard } from './guards/rate-limit.ts';
import type { Logger } from './logging.ts';
import type { ResolvedOptions } from './options.ts';
import { readRequestTarget } from './request/validate.ts';
import { planUpstreamHeaders } from './upstream/request-headers.ts';

/** Resolves when the request may be forwarded; rejects with the ProxyError that refuses it. */
export type Admission = (req: IncomingMessage, res: ServerResponse, exchange: Exchange, isUpgrade: boolean) => Promise<void>;

/**
 * Everything between a request arriving and the engine taking over, in order:
 * is it well-formed, may this client send it now, where does it go, and what
 * does the upstream get as headers. HTTP and WebSocket upgrades alike. No
 * stage opens an upstream connection.
 */
export function createAdmission(config: ResolvedOptions, logger: Logger): Admission {
  const rateLimitGuard = config.rateLimit === false ? undefined : createRateLimitGuard(config.rateLimit, logger);
  const { requestIdHeader } = config;

  return async function admit(req, res, exchange, isUpgrade) {
    exchange.target = readRequestTarget(req);

    if (rateLimitGuard) await rateLimitGuard(req, res);

    try {
      exchange.route = await config.resolveRoute(req, exchange.target.host);
    } catch (err) {
      throw err instanceof ProxyError ? err : new InternalProxyError('route resolver failed', { cause: err });
    }

    const clientsId = requestIdHeader === false ? undefined : req.headers[requestIdHeader];
    exchange.headerPlan = planUpstreamHeaders(req, {
      isUpgrade,
      requestIdHeader,
      newRequestId: clientsId === exchange.requestId ? undefined : exchange.requestId,
    });
  };
}
