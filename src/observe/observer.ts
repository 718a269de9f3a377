import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ProxyError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { RouteKey } from '../routes/route-key.ts';
import type { Activity } from './activity.ts';
import { channels } from './channels.ts';
import { createMetrics, type MetricsSettings, type ProxyMetrics } from './metrics.ts';
import { upstreamId } from '../upstream/address.ts';

/** One place that hears of every request, response, error and WebSocket: metrics, diagnostics channels and activity. */
export interface Observer {
  requestStarted(req: IncomingMessage, res: ServerResponse, exchange: Exchange): void;
  /** Admitted and routed, on its way to the upstream (HTTP only). */
  forwarded(res: ServerResponse, exchange: Exchange): void;
  failed(req: IncomingMessage, exchange: Exchange, error: ProxyError): void;
  webSocketOpened(req: IncomingMessage, exchange: Exchange, socket: Duplex): void;
  webSocketClosed(req: IncomingMessage, exchange: Exchange, socket: Duplex): void;
  ejected(upstream: string): void;
}

function outcome(exchange: Exchange, res: ServerResponse): { status: number; code: string } {
  if (exchange.error !== undefined) return { status: exchange.error.statusCode, code: exchange.error.code };
  if (exchange.upstreamResponded) return { status: res.statusCode, code: 'upstream' };
  // nginx's 499: the client left before anyone answered.
  return { status: 499, code: 'client_closed' };
}

/** Labels with `route` added when the proxy labels routes and the request found one. */
function withRoute<L extends Record<string, string>>(labels: L & { route?: string }, metrics: ProxyMetrics, exchange: Exchange, routeKey: RouteKey): L & { route?: string } {
  if (metrics.routeLabel && exchange.route && exchange.target) labels.route = metrics.routeLabel(routeKey(exchange.target.host));
  return labels;
}

export function createObserver(metricsSettings: MetricsSettings | undefined, activity: Activity | undefined, routeKey: RouteKey): Observer {
  const metrics: ProxyMetrics | undefined = metricsSettings ? createMetrics(metricsSettings) : undefined;
  const proxy = metrics?.proxy ?? '';
  return {
    requestStarted(req, res, exchange) {
      if (channels.requestStart.hasSubscribers) channels.requestStart.publish({ req, requestId: exchange.requestId });
      if (!metrics && !channels.response.hasSubscribers) return;
      const started = performance.now();
      metrics?.inFlight.inc({ proxy });
      res.once('close', () => {
        const { status, code } = outcome(exchange, res);
        const durationMs = performance.now() - started;
        if (metrics) {
          metrics.inFlight.dec({ proxy });
          metrics.requests.inc(withRoute({ proxy, status: String(status), code }, metrics, exchange, routeKey));
          metrics.duration.observe(withRoute({ proxy, code }, metrics, exchange, routeKey), durationMs / 1000);
        }
        if (channels.response.hasSubscribers) channels.response.publish({ req, res, requestId: exchange.requestId, statusCode: status, code, durationMs });
      });
    },
    forwarded(res, exchange) {
      if (!activity) return;
      const key = routeKey(exchange.target!.host);
      activity.began(key, 'http');
      res.once('close', () => activity.ended(key, 'http'));
    },
    failed(req, exchange, error) {
      if (channels.error.hasSubscribers) channels.error.publish({ req, requestId: exchange.requestId, error });
    },
    webSocketOpened(req, exchange, socket) {
      if (metrics) metrics.webSockets.inc(withRoute({ proxy }, metrics, exchange, routeKey));
      activity?.began(routeKey(exchange.target!.host), 'websocket');
      if (channels.webSocketOpen.hasSubscribers) channels.webSocketOpen.publish({ req, requestId: exchange.requestId, socket, upstream: exchange.upstream && upstreamId(exchange.upstream) });
    },
    webSocketClosed(req, exchange, socket) {
      if (metrics) metrics.webSockets.dec(withRoute({ proxy }, metrics, exchange, routeKey));
      activity?.ended(routeKey(exchange.target!.host), 'websocket');
      if (channels.webSocketClose.hasSubscribers) channels.webSocketClose.publish({ req, requestId: exchange.requestId, socket, upstream: exchange.upstream && upstreamId(exchange.upstream) });
    },
    ejected(upstream) {
      metrics?.ejections.inc({ proxy, upstream });
    },
  };
}
