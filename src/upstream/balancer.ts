import type { IncomingMessage } from 'node:http';
import { InternalProxyError, ProxyError, UpstreamUnreachableError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { ResolvedRoute } from '../routes/target.ts';
import { upstreamId } from './address.ts';
import { InFlightCounts } from './balance/in-flight-counts.ts';
import { ROUND_ROBIN, type BalancePolicy } from './balance/options.ts';
import { rendezvous } from './balance/rendezvous.ts';
import { readCookie, stickyCookieHeader } from './balance/sticky-cookie.ts';
import { clientAddress, clientScheme } from './forwarded.ts';

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
  /**
   * The route's upstream for this request, by the route's policy (else the
   * proxy's) over those not taken out and not `exclude`; throws a 502 with
   * Retry-After when none is left. Needs `exchange.trust`.
   */
  pick(route: ResolvedRoute, req: IncomingMessage, exchange: Exchange, exclude?: URL): URL;
  /** The exchange is over: it no longer counts against its upstream (least-connections). */
  release(exchange: Exchange): void;
  /** A connection to `upstream` could not be made. */
  failed(route: ResolvedRoute, upstream: URL): void;
  /** A connection to `upstream` was made. */
  succeeded(upstream: URL): void;
  /** The 502 with Retry-After when every upstream of the route is out, else undefined. */
  allOut(route: ResolvedRoute): UpstreamUnreachableError | undefined;
}

/**
 * Chooses between a route's upstreams by its `balance` policy (round robin
 * unless set), skipping one for `failTimeout` after `maxFails` consecutive
 * connect failures. The policies' parts live in balance/; the state they
 * share (turns, health, requests in flight) lives here, one per proxy. A route with a single
 * upstream is never taken out (nginx ignores max_fails there too): its
 * requests keep trying, and a startup grace can wait for it.
 */
export function createBalancer(options: Required<PassiveHealthOptions>, proxyPolicy: BalancePolicy, onEjected: (upstream: string) => void): Balancer {
  const health = new Map<string, Health>();
  const turns = new Map<string, number>();
  const inFlight = new InFlightCounts();
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

  /** The next usable upstream after the route's last turn; the turn moves on even past unusable ones. */
  function roundRobin(route: ResolvedRoute, usable: (target: URL) => boolean): URL | undefined {
    const { targets } = route;
    const key = routeKey(route);
    const turn = turns.get(key) ?? 0;
    // A route function may name a new set of upstreams per request: keep the map bounded.
    if (turns.size >= MAX_TRACKED && !turns.has(key)) turns.clear();
    turns.set(key, (turn + 1) % targets.length);
    for (let i = 0; i < targets.length; i++) {
      const candidate = targets[(turn + i) % targets.length]!;
      if (usable(candidate)) return candidate;
    }
    return undefined;
  }

  /** The usable upstream with the fewest exchanges in flight; ties go round robin. */
  function leastConnections(route: ResolvedRoute, usable: (target: URL) => boolean): URL | undefined {
    let fewest = Infinity;
    for (const target of route.targets) if (usable(target)) fewest = Math.min(fewest, inFlight.of(target));
    return roundRobin(route, (target) => usable(target) && inFlight.of(target) === fewest);
  }

  function byPolicy(policy: BalancePolicy, route: ResolvedRoute, usable: (target: URL) => boolean, req: IncomingMessage, exchange: Exchange): URL | undefined {
    switch (policy.kind) {
      case 'least-connections':
        return leastConnections(route, usable);
      case 'ip-hash':
        return rendezvous(clientAddress(req, exchange.trust!), route.targets, usable);
      case 'hash': {
        const key = hashKey(policy, req);
        return key === undefined ? roundRobin(route, usable) : rendezvous(key, route.targets, usable);
      }
      case 'cookie': {
        const sent = readCookie(req.headers.cookie, policy.cookie.name);
        const kept = sent === undefined ? undefined : route.targets.find((target) => usable(target) && policy.cookie.valueFor(target) === sent);
        if (kept) return kept;
        // No cookie, a forged or stale one, or its upstream out: another upstream, and the cookie that keeps the client there.
        const chosen = roundRobin(route, usable);
        const secure = clientScheme(req, exchange.trust!) === 'https';
        exchange.setCookie = chosen && stickyCookieHeader(policy.cookie, chosen, req, secure);
        return chosen;
      }
      default:
        return roundRobin(route, usable);
    }
  }

  /** A `hash` policy's key; a throw fails the request (a ProxyError thrown is the answer it chose, anything else a 500). */
  function hashKey(policy: Extract<BalancePolicy, { kind: 'hash' }>, req: IncomingMessage): string | undefined {
    let key: unknown;
    try {
      key = policy.key(req);
    } catch (err) {
      throw err instanceof ProxyError ? err : new InternalProxyError(`${policy.where} threw`, { cause: err });
    }
    // No key (a request without the header it reads): no client to keep anywhere.
    return typeof key === 'string' ? key : undefined;
  }

  /** Counted against the upstream it goes to; a retry elsewhere moves the count with it. */
  function countAgainst(exchange: Exchange, upstream: URL): void {
    if (exchange.countedAgainst) inFlight.remove(exchange.countedAgainst);
    inFlight.add(upstream);
    exchange.countedAgainst = upstream;
  }

  return {
    pick(route, req, exchange, exclude) {
      const { targets } = route;
      if (targets.length === 1) return targets[0]!;
      const now = Date.now();
      const usable = (target: URL) => target !== exclude && !isDown(target, now);
      const policy = route.balance ?? proxyPolicy;
      const chosen = policy === ROUND_ROBIN ? roundRobin(route, usable) : byPolicy(policy, route, usable, req, exchange);
      if (!chosen) throw allOutError(targets, now);
      if (policy.kind === 'least-connections') countAgainst(exchange, chosen);
      return chosen;
    },
    release(exchange) {
      if (exchange.countedAgainst) inFlight.remove(exchange.countedAgainst);
      exchange.countedAgainst = undefined;
    },
    allOut(route) {
      const now = Date.now();
      if (route.targets.length === 1 || route.targets.some((target) => !isDown(target, now))) return undefined;
      return allOutError(route.targets, now);
    },
    failed(route, upstream) {
      if (route.targets.length === 1) return;
      const id = upstreamId(upstream);
      const entry = health.get(id) ?? { fails: 0, downUntil: 0 };
      // Requests that were already on their way when it went out count once, not again.
      if (entry.downUntil > Date.now()) return;
      if (health.size >= MAX_TRACKED && !health.has(id)) forgetHealthy();
      entry.fails++;
      if (entry.fails >= options.maxFails) {
        entry.fails = 0;
        entry.downUntil = Date.now() + options.failTimeout;
        onEjected(id);
      }
      health.set(id, entry);
    },
    succeeded(upstream) {
      const id = upstreamId(upstream);
      const entry = health.get(id);
      if (entry && entry.downUntil <= Date.now()) health.delete(id);
    },
  };
}
