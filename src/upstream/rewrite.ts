import type { IncomingMessage } from 'node:http';
import type { ResolvedRoute } from '../routes/target.ts';
import { clientOrigin, type TrustFunction } from './forwarded.ts';
import type { ResponseShaping } from './response-headers.ts';

/** The proxy-wide settings of what the relay changes in an upstream's response head (a route may override some). */
export interface RewriteSettings {
  rewriteLocation: boolean;
  cookieDomain: Readonly<Record<string, string>> | undefined;
  cookiePath: Readonly<Record<string, string>> | undefined;
  responseHeaders: ResponseShaping | undefined;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * The upstream's own origin, as the route names it or as a dev server names
 * itself: `next dev` builds absolute redirects as `http://localhost:PORT/...`
 * while the route says `http://127.0.0.1:PORT`.
 */
function isUpstreamOrigin(url: URL, target: URL): boolean {
  // A socket has no origin: it names itself by the Host it got, `localhost` with changeOrigin.
  if (target.protocol === 'unix:') return url.protocol === 'http:' && url.port === '' && LOOPBACK_NAMES.has(url.hostname);
  if (url.origin === target.origin) return true;
  return url.protocol === target.protocol && url.port === target.port && LOOPBACK_NAMES.has(url.hostname);
}

/** The route's own path prefix, taken off a path that has it. */
function belowTargetPath(path: string, target: URL): string {
  // A socket's URL path is its file, not a prefix of request paths.
  if (target.protocol === 'unix:') return path;
  const base = target.pathname.endsWith('/') ? target.pathname.slice(0, -1) : target.pathname;
  if (base && (path === base || path.startsWith(`${base}/`) || path.startsWith(`${base}?`))) return path.slice(base.length) || '/';
  return path;
}

/**
 * nginx's `proxy_redirect default`: a Location at the upstream's origin goes
 * to the origin the client used plus the mount path; a root-relative one gets
 * the mount path. Anything else (another site, a relative path) is the app's.
 */
export function rewriteLocation(value: string, target: URL, origin: () => string, mountPath: string): string {
  if (value.startsWith('/') && !value.startsWith('//')) return mountPath ? mountPath + belowTargetPath(value, target) : value;
  let url: URL;
  try {
    url = new URL(value.startsWith('//') ? `${target.protocol}${value}` : value);
  } catch {
    return value;
  }
  if (!isUpstreamOrigin(url, target)) return value;
  return origin() + mountPath + belowTargetPath(url.pathname + url.search + url.hash, target);
}

/** http-proxy's cookieDomainRewrite / cookiePathRewrite: `{ from: to }`, '*' for any, '' to remove the attribute. */
function rewriteCookieAttribute(cookie: string, attribute: string, map: Readonly<Record<string, string>>): string {
  return cookie.replace(new RegExp(`(;\\s*${attribute}=)([^;]+)`, 'i'), (match, prefix: string, previous: string) => {
    const next = Object.hasOwn(map, previous) ? map[previous] : map['*'];
    if (next === undefined) return match;
    return next ? prefix + next : '';
  });
}

/** The response fields rewriting may touch, lower case: any other field is copied without a look. */
export const REWRITABLE_FIELDS = new Set(['location', 'content-location', 'set-cookie']);

/**
 * One response field's value for the client, rewritten where the settings say
 * so. Called only for REWRITABLE_FIELDS, so a response without them costs
 * nothing here.
 */
export function rewriteField(settings: RewriteSettings, route: ResolvedRoute, req: IncomingMessage, target: URL, trust: TrustFunction, lowerName: string, value: string): string {
  if (lowerName === 'set-cookie') {
    let cookie = value;
    if (settings.cookieDomain) cookie = rewriteCookieAttribute(cookie, 'domain', settings.cookieDomain);
    if (settings.cookiePath) cookie = rewriteCookieAttribute(cookie, 'path', settings.cookiePath);
    return cookie;
  }
  if (!(route.rewriteLocation ?? settings.rewriteLocation)) return value;
  // Express's mount path; a plain node:http server has none.
  const mountPath = (req as { baseUrl?: string }).baseUrl ?? '';
  return rewriteLocation(value, target, () => clientOrigin(req, trust), mountPath);
}
