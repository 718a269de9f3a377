import type { IncomingMessage } from 'node:http';
import { RouteNotFoundError } from '../errors.ts';
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

export type RouteFunction<Req extends IncomingMessage = ProxyRequest> = (req: Req) => Target | undefined | Promise<Target | undefined>;

/** A record of exact host names, or a function of the request (see `portHostRoutes`). */
export type Routes<Req extends IncomingMessage = ProxyRequest> = Readonly<Record<string, Target>> | RouteFunction<Req>;

/** Finds the route for a request, or throws RouteNotFoundError. */
export type RouteResolver = (req: IncomingMessage, host: string) => Promise<ResolvedRoute>;

/** Validates the table once, at construction, and returns the per-request lookup. */
export function compileRoutes(routes: unknown): RouteResolver {
  if (typeof routes === 'function') {
    const routeFor = routes as RouteFunction;
    return async (req) => {
      const target = await routeFor(req);
      if (target === undefined || target === null) throw new RouteNotFoundError();
      return normalizeTarget(target, 'the route function result');
    };
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
  return async (_req, host) => {
    const route = byHost.get(host);
    if (!route) throw new RouteNotFoundError();
    return route;
  };
}
