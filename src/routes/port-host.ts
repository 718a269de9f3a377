import type { IncomingMessage } from 'node:http';
import { ProxyOptionsError, rejectUnknownKeys } from '../option-checks.ts';
import { cacheRoutes, portHostCacheSettings, type CachedRoutes, type RouteCacheOptions } from './cache.ts';
import type { RouteLookup } from './deadline.ts';
import { normalizeHost } from './host.ts';
import { withRouteKey } from './route-key.ts';
import type { ProxyRequest, RouteFunction } from './table.ts';
import type { Target } from './target.ts';

/**
 * Generic over the request like `ProxyOptions`: annotate `resolve`'s `req`
 * (`(id, port, req: Request) => ...`) and it, and the proxy's options, take
 * that type.
 */
export interface PortHostRoutesOptions<Req extends IncomingMessage = ProxyRequest> {
  /** The parent domain, e.g. `localhost` or `preview.example.com`. */
  domain: string;
  /**
   * Returns the upstream for sandbox `id` and app `port`, or undefined when
   * there is none. `lookup.signal` aborts at `timeouts.route` or when the
   * client leaves (with `cache`: when every request sharing the lookup left).
   */
  resolve: (id: string, port: number, req: Req, lookup: RouteLookup) => Target | undefined | Promise<Target | undefined>;
  /**
   * Keeps what `resolve` answers, per `{port}-{id}`, and shares one call
   * between concurrent requests; `invalidate(id)` drops every port of a
   * sandbox. See `RouteCacheOptions`.
   */
  cache?: RouteCacheOptions;
}

// `{port}-{id}`: the port is 1-65535 written without leading zeros, so that one
// port has exactly one spelling; the id is one DNS label.
const LABEL_PATTERN = /^([1-9][0-9]{0,4})-([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/;

/**
 * Routes `{port}-{id}.{domain}` hosts, the shape preview proxies use
 * (`3000-demo.localhost`). A host that does not parse, or names a port out of
 * range, gets no route (404): it is never sent to some other port.
 */
export function portHostRoutes<Req extends IncomingMessage = ProxyRequest>(options: PortHostRoutesOptions<Req> & { cache: RouteCacheOptions }): CachedRoutes<Req>;
export function portHostRoutes<Req extends IncomingMessage = ProxyRequest>(options: PortHostRoutesOptions<Req>): RouteFunction<Req>;
export function portHostRoutes<Req extends IncomingMessage = ProxyRequest>(options: PortHostRoutesOptions<Req>): RouteFunction<Req> | CachedRoutes<Req> {
  const domain = normalizeHost(options?.domain);
  if (!domain) throw new ProxyOptionsError(`portHostRoutes: domain must be a host name such as "localhost"; got ${JSON.stringify(options?.domain)}`);
  if (typeof options.resolve !== 'function') throw new ProxyOptionsError('portHostRoutes: resolve must be a function (id, port, req) => target | undefined');
  // A misspelt `cache` would leave every request to resolve, silently.
  rejectUnknownKeys(options, ['domain', 'resolve', 'cache'], 'portHostRoutes.');
  const suffix = `.${domain}`;
  const { resolve } = options;

  // Every port of a sandbox is one thing to the platform: activity and metrics know it by its id.
  const idOf = (host: string) => (host.endsWith(suffix) && LABEL_PATTERN.exec(host.slice(0, -suffix.length))?.[2]) || host;
  if (options.cache === undefined) {
    return withRouteKey(function routeByPortHost(req, lookup) {
      const host = normalizeHost(req.headers.host);
      if (!host?.endsWith(suffix)) return undefined;
      const match = LABEL_PATTERN.exec(host.slice(0, -suffix.length));
      if (!match) return undefined;
      const port = Number(match[1]);
      if (port > 65535) return undefined;
      return resolve(match[2]!, port, req, lookup);
    }, idOf);
  }

  // Keyed by the host as the proxy routes it (normalised): a hit costs a
  // suffix check and a map lookup, and allocates nothing; the host is parsed
  // only on a miss.
  const cached = cacheRoutes<Req>(
    {
      keyOf(req, host = normalizeHost(req.headers.host)) {
        return host?.endsWith(suffix) ? host : undefined;
      },
      lookUp(req, host) {
        const match = LABEL_PATTERN.exec(host.slice(0, -suffix.length));
        const port = Number(match?.[1]);
        if (!match || port > 65535) return undefined;
        const id = match[2]!;
        return (lookup) => resolve(id, port, req, lookup);
      },
      uncached: undefined,
      // Only hosts that parsed are kept: `{port}-{id}{suffix}`.
      groupOf: (host) => host.slice(host.indexOf('-') + 1, -suffix.length),
      // Host names are compared in lower case, and so are the ids taken from them.
      normalizeKey: (id) => id.toLowerCase(),
      where: 'the route function result',
    },
    portHostCacheSettings(options.cache),
  );
  return withRouteKey(cached, idOf) as CachedRoutes<Req>;
}
