import { createRequire } from 'node:module';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { booleanOption, fail, isRecord, rejectUnknownKeys, show } from '../option-checks.ts';

/** The `metrics` option. */
export interface MetricsOptions {
  /** The prom-client Registry to register the metrics in. Several proxies may share one. */
  registry: Registry;
  /** This proxy's `proxy` label. Default `'default'`. Proxies with the same name on one registry share their series. */
  name?: string;
  /** Adds a `route` label (the route key: the host, or portHostRoutes' sandbox id). Default false. */
  routeLabel?: boolean;
  /** With `routeLabel`: route keys past this many distinct ones are labelled `other`. Default 100. */
  maxRouteLabels?: number;
}

export interface MetricsSettings {
  registry: Registry;
  name: string;
  /** How many route keys get a `route` label of their own; `false`: no route label. */
  maxRouteLabels: number | false;
}

export const DEFAULT_MAX_ROUTE_LABELS = 100;
const METRICS_NAMES = ['registry', 'name', 'routeLabel', 'maxRouteLabels'];

export function resolveMetrics(value: unknown): MetricsSettings | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value)) fail(`metrics must be { registry, name?, routeLabel?, maxRouteLabels? } with a prom-client Registry; got ${show(value)}`);
  rejectUnknownKeys(value, METRICS_NAMES, 'metrics.');
  const { registry, name = 'default', routeLabel, maxRouteLabels } = value;
  const methods = registry as { registerMetric?: unknown; getSingleMetric?: unknown } | undefined;
  if (typeof methods?.registerMetric !== 'function' || typeof methods.getSingleMetric !== 'function') {
    fail(`metrics.registry must be a prom-client Registry; got ${show(registry)}`);
  }
  if (typeof name !== 'string' || name === '') fail(`metrics.name must be a non-empty string (the proxy label of this proxy's series); got ${show(name)}`);
  if (!booleanOption(routeLabel, 'metrics.routeLabel', false)) {
    if (maxRouteLabels !== undefined) fail('metrics.maxRouteLabels is set but metrics.routeLabel is not: set routeLabel: true, or leave maxRouteLabels out');
    return { registry: registry as Registry, name, maxRouteLabels: false };
  }
  if (maxRouteLabels !== undefined && (typeof maxRouteLabels !== 'number' || !Number.isInteger(maxRouteLabels) || maxRouteLabels < 1)) {
    fail(`metrics.maxRouteLabels must be a whole number from 1; got ${show(maxRouteLabels)}`);
  }
  return { registry: registry as Registry, name, maxRouteLabels: (maxRouteLabels as number | undefined) ?? DEFAULT_MAX_ROUTE_LABELS };
}

type Client = typeof import('prom-client');
let client: Client | undefined;

/**
 * prom-client is an optional peer dependency: loaded only when `metrics` is
 * set, so a proxy without metrics pays nothing and needs no install.
 */
function promClient(): Client {
  client ??= createRequire(import.meta.url)('prom-client') as Client;
  return client;
}

interface MetricSpec {
  name: string;
  help: string;
  labelNames: readonly string[];
  buckets?: readonly number[];
}

const KINDS = { counter: 'Counter', gauge: 'Gauge', histogram: 'Histogram' } as const;
type Kind = keyof typeof KINDS;
type MetricOf<K extends Kind, L extends string> = K extends 'counter' ? Counter<L> : K extends 'gauge' ? Gauge<L> : Histogram<L>;

/** Refuses, as an option error, a metric of that name in `registry` that is not ours (another kind, other labels). */
function checkShared(registry: Registry, kind: Kind, spec: MetricSpec): void {
  const existing = registry.getSingleMetric(spec.name) as { type?: unknown; labelNames?: unknown } | undefined;
  if (existing === undefined) return;
  const labels = Array.isArray(existing.labelNames) ? (existing.labelNames as string[]) : [];
  if (existing.type === kind && labels.length === spec.labelNames.length && spec.labelNames.every((label) => labels.includes(label))) return;
  fail(
    `metrics.registry already has a metric named "${spec.name}" that is not honest-proxy's (a ${String(existing.type)} labelled ${labels.join(', ') || 'with nothing'}; ` +
      `expected a ${kind} labelled ${spec.labelNames.join(', ')}); remove it or give the proxy another registry`,
  );
}

/**
 * The metric `spec.name` in `registry`: the one a proxy registered there
 * before, else a new one. prom-client refuses a second metric of one name in
 * a registry, so every proxy on a registry shares one metric object and its
 * series are told apart by the `proxy` label.
 */
export function sharedMetric<K extends Kind, L extends string>(registry: Registry, kind: K, spec: MetricSpec & { labelNames: readonly L[] }): MetricOf<K, L> {
  checkShared(registry, kind, spec);
  const existing = registry.getSingleMetric(spec.name);
  if (existing !== undefined) return existing as unknown as MetricOf<K, L>;
  const Metric = promClient()[KINDS[kind]] as unknown as new (config: object) => MetricOf<K, L>;
  return new Metric({ ...spec, labelNames: [...spec.labelNames], ...(spec.buckets && { buckets: [...spec.buckets] }), registers: [registry] });
}

export interface ProxyMetrics {
  /** This proxy's `proxy` label. */
  proxy: string;
  /** The `route` label for a route key (`other` past the cap); undefined when route labels are off. */
  routeLabel: ((key: string) => string) | undefined;
  requests: Counter<'proxy' | 'status' | 'code' | 'route'>;
  duration: Histogram<'proxy' | 'code' | 'route'>;
  inFlight: Gauge<'proxy'>;
  webSockets: Gauge<'proxy' | 'route'>;
  ejections: Counter<'proxy' | 'upstream'>;
}

/**
 * The first `max` route keys seen get a label of their own, for the life of
 * the proxy; later ones share `other`. A label per key forever would let a
 * platform with thousands of sandboxes grow the registry without bound.
 */
function routeLabels(max: number): (key: string) => string {
  const named = new Set<string>();
  return (key) => {
    if (named.has(key)) return key;
    if (named.size >= max) return 'other';
    named.add(key);
    return key;
  };
}

// `route` is declared on every proxy's metrics, used or not: the metric object
// is shared by every proxy on the registry, and a proxy without route labels
// just leaves it out of its series.
const REQUESTS = {
  name: 'honest_proxy_requests_total',
  help: 'Requests answered, by status and by ProxyError code (upstream: the upstream answered).',
  labelNames: ['proxy', 'status', 'code', 'route'],
} as const;
const DURATION = {
  name: 'honest_proxy_request_duration_seconds',
  help: 'From the request arriving to the end of its response.',
  labelNames: ['proxy', 'code', 'route'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
} as const;
const IN_FLIGHT = { name: 'honest_proxy_in_flight', help: 'HTTP requests being proxied now.', labelNames: ['proxy'] } as const;
const WEBSOCKETS = { name: 'honest_proxy_websockets_open', help: 'Proxied WebSockets open now.', labelNames: ['proxy', 'route'] } as const;
const EJECTIONS = {
  name: 'honest_proxy_upstream_ejections_total',
  help: 'Times an upstream was taken out of its route for failing to accept connections.',
  labelNames: ['proxy', 'upstream'],
} as const;

export function createMetrics({ registry, name, maxRouteLabels }: MetricsSettings): ProxyMetrics {
  // Every one checked before any is registered: a proxy refused leaves the registry as it was.
  for (const [kind, spec] of [['counter', REQUESTS], ['histogram', DURATION], ['gauge', IN_FLIGHT], ['gauge', WEBSOCKETS], ['counter', EJECTIONS]] as const) {
    checkShared(registry, kind, spec);
  }
  const metrics: ProxyMetrics = {
    proxy: name,
    routeLabel: maxRouteLabels === false ? undefined : routeLabels(maxRouteLabels),
    requests: sharedMetric(registry, 'counter', REQUESTS),
    duration: sharedMetric(registry, 'histogram', DURATION),
    inFlight: sharedMetric(registry, 'gauge', IN_FLIGHT),
    webSockets: sharedMetric(registry, 'gauge', WEBSOCKETS),
    ejections: sharedMetric(registry, 'counter', EJECTIONS),
  };
  // The gauges read 0 from the start rather than being absent; adding 0 leaves
  // a series that a proxy of the same name already moves as it is.
  metrics.inFlight.inc({ proxy: name }, 0);
  metrics.webSockets.inc({ proxy: name }, 0);
  return metrics;
}
