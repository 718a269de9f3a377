import type { IncomingMessage } from 'node:http';
import { RouteNotFoundError } from '../errors.ts';
import { cachedLookupOf } from './cache.ts';
import { createRouteDeadline, DEFAULT_ROUTE_TIMEOUT, type RouteLookup } from './deadline.ts';
import { normalizeHost } from './host.ts';
import { describe, normalizeTarget, type ResolvedRoute, type Target } from './target.ts';

/**
 * The request a route function gets: Node's request, with Express's own fields
 * when the proxy runs inside Express. Annotate the parameter with Express's
 * `Request` type (`(req: Request) => ...`) and the options take that type.
 */
export interface ProxyRequest extends IncomingMessage {
  hostname?: string;
  ip?: string;
  params?: Record<string, string>;
  baseUrl?: string;
  originalUrl?: string;
  path?: string;
}

/** `lookup.signal` aborts at `timeouts.route` or when the client leaves: hand it to the query. */
export type RouteFunction<Req extends IncomingMessage = ProxyRequest> = (req: Req, lookup: RouteLookup) => Target | undefined | Promise<Target | undefined>;

/** A record of exact host names, or a function of the request (see `portHostRoutes`). */
export type Routes<Req extends IncomingMessage = ProxyRequest> = Readonly<Record<string, Target>> | RouteFunction<Req>;

/**
 * Finds the route for a request, or throws (or rejects with)
 * RouteNotFoundError. A route known at once (a record, a cache hit) is
 * returned as it is: no promise to wait on.
 */
export type RouteResolver = (req: IncomingMessage, host: string) => ResolvedRoute | Promise<ResolvedRoute>;

function routeOf(target: Target | undefined | null): ResolvedRoute {
  if (target === undefined || target === null) throw new RouteNotFoundError();
  return normalizeTarget(target, 'the route function result');
}

/**
 * Validates the table once, at construction, and returns the per-request
 * lookup. A function runs under a deadline of `timeoutMs` (`timeouts.route`);
 * a record needs none.
 */
export function compileRoutes(routes: unknown, timeoutMs = DEFAULT_ROUTE_TIMEOUT): RouteResolver {
  if (typeof routes === 'function') {
    const cached = cachedLookupOf(routes);
    if (cached) return (req, host) => cached(req, host, timeoutMs);
    const routeFor = routes as RouteFunction;
    const lookUp = createRouteDeadline(timeoutMs);
    return (req) => lookUp(req, (lookup) => routeFor(req, lookup), routeOf);
  }
  if (typeof routes !== 'object' || routes === null || Array.isArray(routes)) {
    throw new TypeError(`routes must be a record of host -> target, or a function (req) => target; got ${describe(routes)}`);
  }
  const byHost = new Map<string, ResolvedRoute>();
  for (const [key, value] of Object.entries(routes)) {
    const host = normalizeHost(key);
    if (!host) throw new TypeError(`routes: ${JSON.stringify(key)} is not a host name`);
    if (byHost.has(host)) throw new TypeError(`routes: ${JSON.stringify(key)} names the same host as another entry`);
    byHost.set(host, normalizeTarget(value, `routes[${JSON.stringify(key)}]`));
  }
  if (byHost.size === 0) throw new TypeError('routes must name at least one host');
  return (_req, host) => {
    const route = byHost.get(host);
    if (!route) throw new RouteNotFoundError();
    return route;
  };
}
