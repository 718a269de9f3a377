import { UpstreamUnreachableError } from '../errors.ts';
import type { ResolvedRoute } from '../routes/target.ts';
import { upstreamId } from './address.ts';

/** nginx's passive health: `max_fails` consecutive connect failures take an upstream out for `fail_timeout`. */
export interface PassiveHealthOptions {
  /** Consecutive connect failures before an upstream is skipped. Default 1. */
  maxFails?: number;
  /** How long a failed upstream is skipped, in ms. Default 10000. */
  failTimeout?: number;
}

export const DEFAULT_PASSIVE_HEALTH = { maxFails: 1, failTimeout: 10_000 } as const;

// Routes and upstreams remembered at most, so a route function that names ever
// new upstreams cannot grow the balancer's memory without end.
const MAX_TRACKED = 10_000;

interface Health {
  fails: number;
  downUntil: number;
}

export interface Balancer {
  /** The next upstream of the route, round robin over those not taken out; throws a 502 with Retry-After when none is left. */
  pick(route: ResolvedRoute, exclude?: URL): URL;
  /** A connection to `upstream` could not be made. */
  failed(route: ResolvedRoute, upstream: URL): void;
  /** A connection to `upstream` was made. */
  succeeded(upstream: URL): void;
  /** The 502 with Retry-After when every upstream of the route is out, else undefined. */
  allOut(route: ResolvedRoute): UpstreamUnreachableError | undefined;
}

/**
 * Round robin between a route's upstreams, skipping one for `failTimeout`
 * after `maxFails` consecutive connect failures. A route with a single
 * upstream is never taken out (nginx ignores max_fails there too): its
 * requests keep trying, and a startup grace can wait for it.
 */
export function createBalancer(options: Required<PassiveHealthOptions>, onEjected: (upstream: string) => void): Balancer {
  const health = new Map<string, Health>();
  const turns = new Map<string, number>();
  const isDown = (upstream: URL, now: number) => (health.get(upstreamId(upstream))?.downUntil ?? 0) > now;
  const routeKey = (route: ResolvedRoute) => route.targets.map((target) => target.href).join(' ');
  // Entries not taken out are only counts of recent failures: the first to go when the map is full.
  const forgetHealthy = () => {
    const now = Date.now();
    for (const [origin, entry] of health) if (entry.downUntil <= now) health.delete(origin);
  };
  const allOutError = (targets: readonly URL[], now: number) => {
    const firstBack = Math.min(...targets.map((target) => health.get(upstreamId(target))?.downUntil ?? now));
    return new UpstreamUnreachableError('every upstream of the route is taken out', {
      proxyStatus: 'destination_unavailable',
      headers: { 'retry-after': String(Math.max(1, Math.ceil((firstBack - now) / 1000))) },
    });
  };

  return {
    pick(route, exclude) {
      const { targets } = route;
      if (targets.length === 1) return targets[0]!;
      const key = routeKey(route);
      const turn = turns.get(key) ?? 0;
      // A route function may name a new set of upstreams per request: keep the map bounded.
      if (turns.size >= MAX_TRACKED && !turns.has(key)) turns.clear();
      turns.set(key, (turn + 1) % targets.length);
      const now = Date.now();
      for (let i = 0; i < targets.length; i++) {
        const candidate = targets[(turn + i) % targets.length]!;
        if (candidate !== exclude && !isDown(candidate, now)) return candidate;
      }
      throw allOutError(targets, now);
    },
    allOut(route) {
      const now = Date.now();
      if (route.targets.length === 1 || route.targets.some((target) => !isDown(target, now))) return undefined;
      return allOutError(route.targets, now);
    },
    failed(route, upstream) {
      if (route.targets.length === 1) return;
      const entry = health.get(upstreamId(upstream)) ?? { fails: 0, downUntil: 0 };
      // Requests that were already on their way when it went out count once, not again.
      if (entry.downUntil > Date.now()) return;
      if (health.size >= MAX_TRACKED && !health.has(upstreamId(upstream))) forgetHealthy();
      entry.fails++;
      if (entry.fails >= options.maxFails) {
        entry.fails = 0;
        entry.downUntil = Date.now() + options.failTimeout;
        onEjected(upstreamId(upstream));
      }
      health.set(upstreamId(upstream), entry);
    },
    succeeded(upstream) {
      const entry = health.get(upstreamId(upstream));
      if (entry && entry.downUntil <= Date.now()) health.delete(upstreamId(upstream));
    },
  };
}
