import { parseBodyLimit } from '../guards/body-limit.ts';

/** Where a route sends requests: an `http:` or `https:` URL. Its path is prepended. */
export type TargetUrl = string | URL;

/** A target with per-route settings (later issues add more of them). */
export interface RouteTarget {
  target: TargetUrl;
  /** Overrides the proxy-wide `bodyLimit` for this route. */
  bodyLimit?: number | string | false;
}

export type Target = TargetUrl | RouteTarget;

/** A target after validation, as the rest of the proxy uses it. */
export interface ResolvedRoute {
  target: URL;
  /** Bytes; `false` for no limit; `undefined` to use the proxy-wide limit. */
  bodyLimit?: number | false;
}

/** Parses and checks a target; throws a TypeError that says where the bad value came from. */
export function normalizeTarget(value: unknown, where: string): ResolvedRoute {
  if (typeof value === 'string' || value instanceof URL) return { target: parseTargetUrl(value, where) };
  if (typeof value === 'object' && value !== null && 'target' in value) {
    const { target, bodyLimit } = value as RouteTarget;
    const route: ResolvedRoute = { target: parseTargetUrl(target, `${where}.target`) };
    if (bodyLimit !== undefined) route.bodyLimit = parseBodyLimit(bodyLimit, `${where}.bodyLimit`);
    return route;
  }
  throw new TypeError(`${where} must be a URL string, a URL, or { target, ...settings }; got ${describe(value)}`);
}

function parseTargetUrl(value: unknown, where: string): URL {
  let url: URL;
  try {
    url = value instanceof URL ? new URL(value.href) : new URL(String(value));
  } catch {
    throw new TypeError(`${where} must be an absolute http: or https: URL; got ${describe(value)}`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new TypeError(`${where} must be an absolute http: or https: URL; got ${describe(value)}`);
  }
  return url;
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof URL) return JSON.stringify(value.href);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}
