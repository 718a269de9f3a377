import type { Counter, Gauge } from 'prom-client';
import type { RouteCacheLink } from '../routes/cache.ts';
import { sharedMetric, type MetricsSettings } from './metrics.ts';

// Read from the cache's own counts when the registry is scraped: a request
// pays nothing for these metrics, hit or miss.
const HITS = { name: 'honest_proxy_route_cache_hits_total', help: 'Requests answered from the route cache (a route, or a kept "no route").', labelNames: ['proxy'] } as const;
const MISSES = { name: 'honest_proxy_route_cache_misses_total', help: 'Requests that waited for a route lookup, their own or a shared one.', labelNames: ['proxy'] } as const;
const ENTRIES = { name: 'honest_proxy_route_cache_entries', help: 'Entries the route cache holds now.', labelNames: ['proxy'] } as const;

type Sources = Map<string, Set<RouteCacheLink>>;

// The metric objects are shared by every proxy on a registry (see sharedMetric):
// each one reports, per `proxy` label, the caches of every proxy of that name.
const sourcesOf = new WeakMap<object, Sources>();

function sources(metric: object): Sources {
  let found = sourcesOf.get(metric);
  if (!found) sourcesOf.set(metric, (found = new Map()));
  return found;
}

function sum(caches: Set<RouteCacheLink>, count: 'hits' | 'misses' | 'size'): number {
  let total = 0;
  for (const cache of caches) total += cache.stats()[count];
  return total;
}

function collectCount(this: Counter<'proxy'>, count: 'hits' | 'misses'): void {
  this.reset();
  for (const [proxy, caches] of sources(this)) this.inc({ proxy }, sum(caches, count));
}

const SPECS = {
  hits: { ...HITS, collect(this: Counter<'proxy'>) { collectCount.call(this, 'hits'); } },
  misses: { ...MISSES, collect(this: Counter<'proxy'>) { collectCount.call(this, 'misses'); } },
  entries: {
    ...ENTRIES,
    collect(this: Gauge<'proxy'>) {
      for (const [proxy, caches] of sources(this)) this.set({ proxy }, sum(caches, 'size'));
    },
  },
};

/** Registers the route cache's hits, misses and size in the proxy's registry, under its `proxy` label. */
export function observeRouteCache({ registry, name }: MetricsSettings, cache: RouteCacheLink): void {
  const metrics = [sharedMetric(registry, 'counter', SPECS.hits), sharedMetric(registry, 'counter', SPECS.misses), sharedMetric(registry, 'gauge', SPECS.entries)];
  for (const metric of metrics) {
    const byProxy = sources(metric);
    let caches = byProxy.get(name);
    if (!caches) byProxy.set(name, (caches = new Set()));
    caches.add(cache);
  }
}
