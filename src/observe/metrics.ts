import { createRequire } from 'node:module';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The `metrics` option: a prom-client Registry the proxy's metrics are registered in. */
export interface MetricsOptions {
  registry: Registry;
}

export interface ProxyMetrics {
  requests: Counter<'status' | 'code'>;
  duration: Histogram<'code'>;
  inFlight: Gauge;
  webSockets: Gauge;
  ejections: Counter<'upstream'>;
}

/**
 * prom-client is an optional peer dependency: loaded only when `metrics` is
 * set, so a proxy without metrics pays nothing and needs no install.
 */
export function createMetrics(options: MetricsOptions): ProxyMetrics {
  const require = createRequire(import.meta.url);
  const client = require('prom-client') as typeof import('prom-client');
  const registers = [options.registry];
  return {
    requests: new client.Counter({
      name: 'honest_proxy_requests_total',
      help: 'Requests answered, by status and by ProxyError code (upstream: the upstream answered).',
      labelNames: ['status', 'code'],
      registers,
    }),
    duration: new client.Histogram({
      name: 'honest_proxy_request_duration_seconds',
      help: 'From the request arriving to the end of its response.',
      labelNames: ['code'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    inFlight: new client.Gauge({ name: 'honest_proxy_in_flight', help: 'HTTP requests being proxied now.', registers }),
    webSockets: new client.Gauge({ name: 'honest_proxy_websockets_open', help: 'Proxied WebSockets open now.', registers }),
    ejections: new client.Counter({
      name: 'honest_proxy_upstream_ejections_total',
      help: 'Times an upstream was taken out of its route for failing to accept connections.',
      labelNames: ['upstream'],
      registers,
    }),
  };
}
