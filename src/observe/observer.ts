import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ProxyError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import { channels } from './channels.ts';
import { createMetrics, type MetricsOptions, type ProxyMetrics } from './metrics.ts';

/** One place that hears of every request, response, error and WebSocket: metrics and diagnostics channels. */
export interface Observer {
  requestStarted(req: IncomingMessage, res: ServerResponse, exchange: Exchange): void;
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

export function createObserver(metricsOptions: MetricsOptions | undefined): Observer {
  const metrics: ProxyMetrics | undefined = metricsOptions ? createMetrics(metricsOptions) : undefined;
  return {
    requestStarted(req, res, exchange) {
      if (channels.requestStart.hasSubscribers) channels.requestStart.publish({ req, requestId: exchange.requestId });
      if (!metrics && !channels.response.hasSubscribers) return;
      const started = performance.now();
      metrics?.inFlight.inc();
      res.once('close', () => {
        const { status, code } = outcome(exchange, res);
        const durationMs = performance.now() - started;
        if (metrics) {
          metrics.inFlight.dec();
          metrics.requests.inc({ status: String(status), code });
          metrics.duration.observe({ code }, durationMs / 1000);
        }
        if (channels.response.hasSubscribers) channels.response.publish({ req, res, requestId: exchange.requestId, statusCode: status, code, durationMs });
      });
    },
    failed(req, exchange, error) {
      if (channels.error.hasSubscribers) channels.error.publish({ req, requestId: exchange.requestId, error });
    },
    webSocketOpened(req, exchange, socket) {
      metrics?.webSockets.inc();
      if (channels.webSocketOpen.hasSubscribers) channels.webSocketOpen.publish({ req, requestId: exchange.requestId, socket, upstream: exchange.upstream?.origin });
    },
    webSocketClosed(req, exchange, socket) {
      metrics?.webSockets.dec();
      if (channels.webSocketClose.hasSubscribers) channels.webSocketClose.publish({ req, requestId: exchange.requestId, socket, upstream: exchange.upstream?.origin });
    },
    ejected(upstream) {
      metrics?.ejections.inc({ upstream });
    },
  };
}
