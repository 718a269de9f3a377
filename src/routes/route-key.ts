import type { IncomingMessage } from 'node:http';
import type { RouteFunction } from './table.ts';

/**
 * The key a route is known by outside the proxy: what activity reports
 * (`onActivity`) and the metrics' `route` label name. The host by default; a
 * route function that serves many hosts for one thing (portHostRoutes: every
 * port of a sandbox) says so by carrying a `keyOf`.
 */
export type RouteKey = (host: string) => string;

const KEY_OF = Symbol('honest-proxy.route-key');

const byHost: RouteKey = (host) => host;

/** Marks `route` as knowing its routes by `keyOf(host)` (host: normalised, as routed). */
export function withRouteKey<Req extends IncomingMessage>(route: RouteFunction<Req>, keyOf: RouteKey): RouteFunction<Req> {
  return Object.assign(route, { [KEY_OF]: keyOf });
}

/** The key function for a `routes` option: the route function's own, else the host. */
export function routeKeyOf(routes: unknown): RouteKey {
  const keyOf = typeof routes === 'function' ? (routes as { [KEY_OF]?: unknown })[KEY_OF] : undefined;
  return typeof keyOf === 'function' ? (keyOf as RouteKey) : byHost;
}
