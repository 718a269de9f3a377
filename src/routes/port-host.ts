import type { IncomingMessage } from 'node:http';
import { ProxyOptionsError } from '../option-checks.ts';
import { normalizeHost } from './host.ts';
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
  /** Returns the upstream for sandbox `id` and app `port`, or undefined when there is none. */
  resolve: (id: string, port: number, req: Req) => Target | undefined | Promise<Target | undefined>;
}

// `{port}-{id}`: the port is 1-65535 written without leading zeros, so that one
// port has exactly one spelling; the id is one DNS label.
const LABEL_PATTERN = /^([1-9][0-9]{0,4})-([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/;

/**
 * Routes `{port}-{id}.{domain}` hosts, the shape preview proxies use
 * (`3000-demo.localhost`). A host that does not parse, or names a port out of
 * range, gets no route (404): it is never sent to some other port.
 */
export function portHostRoutes<Req extends IncomingMessage = ProxyRequest>(options: PortHostRoutesOptions<Req>): RouteFunction<Req> {
  const domain = normalizeHost(options?.domain);
  if (!domain) throw new ProxyOptionsError(`portHostRoutes: domain must be a host name such as "localhost"; got ${JSON.stringify(options?.domain)}`);
  if (typeof options.resolve !== 'function') throw new ProxyOptionsError('portHostRoutes: resolve must be a function (id, port, req) => target | undefined');
  const suffix = `.${domain}`;
  const { resolve } = options;

  return function routeByPortHost(req) {
    const host = normalizeHost(req.headers.host);
    if (!host?.endsWith(suffix)) return undefined;
    const match = LABEL_PATTERN.exec(host.slice(0, -suffix.length));
    if (!match) return undefined;
    const port = Number(match[1]);
    if (port > 65535) return undefined;
    return resolve(match[2]!, port, req);
  };
}
