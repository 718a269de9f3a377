import type { IncomingMessage } from 'node:http';
import { parseBodyLimit } from '../guards/body-limit.ts';
import { rejectUnknownKeys } from '../option-checks.ts';
import { unixUpstream } from '../upstream/address.ts';
import { compileBalance, type BalanceOption, type BalancePolicy } from '../upstream/balance/options.ts';
import { compileShaping, type RequestShaping, type RequestShapingOptions } from '../upstream/shaping-options.ts';
import { parseTls, type TlsSettings, type UpstreamTlsOptions } from '../upstream/tls.ts';
import { compileTransform, type TransformResponseOptions, type TransformRule } from '../upstream/transform-options.ts';
import { parseRouteSettings, type RouteSettings, type RouteSettingsOptions } from './route-settings.ts';

/**
 * Where a route sends requests: an `http:` or `https:` URL, whose path is
 * prepended, or `unix:/path/to/app.sock` for a unix domain socket.
 */
export type TargetUrl = string | URL;

/** The settings a route object may carry besides where it goes. */
interface RouteTargetSettings extends RequestShapingOptions<IncomingMessage>, RouteSettingsOptions<IncomingMessage> {
  /** Overrides the proxy-wide `balance` for this route. */
  balance?: BalanceOption<IncomingMessage>;
  /** Overrides the proxy-wide `bodyLimit` for this route. */
  bodyLimit?: number | string | false;
  /** Overrides the proxy-wide `startupGrace` for this route (ms). */
  startupGrace?: number;
  /** Replaces the proxy-wide `transformResponse` for this route; `false` transforms nothing here. */
  transformResponse?: TransformResponseOptions<IncomingMessage> | false;
  /** TLS to this route's `https:` upstreams; replaces the proxy-wide `tls` whole. */
  tls?: UpstreamTlsOptions;
}

/**
 * A target with per-route settings; its requestHeaders, removeCookies and
 * removeQuery add to the proxy-wide ones. It names its upstream with
 * `target`, or with `socketPath` for a unix domain socket.
 */
export type RouteTarget = RouteTargetSettings &
  (
    | {
        /** One upstream, or several to balance between (by `balance`, with passive health). */
        target: TargetUrl | readonly TargetUrl[];
        socketPath?: never;
      }
    | {
        /** The absolute path of a unix domain socket the upstream listens on; the same as `target: 'unix:' + socketPath`. */
        socketPath: string;
        target?: never;
      }
  );

export type Target = TargetUrl | readonly TargetUrl[] | RouteTarget;

/** A target after validation, as the rest of the proxy uses it. */
export interface ResolvedRoute extends RouteSettings {
  /** At least one. */
  targets: readonly URL[];
  /** Bytes; `false` for no limit; `undefined` to use the proxy-wide limit. */
  bodyLimit?: number | false;
  /** `undefined` to use the proxy-wide policy. */
  balance?: BalancePolicy;
  /** ms; `undefined` to use the proxy-wide grace. */
  startupGrace?: number;
  /** The route's own request shaping, before the proxy-wide one is merged in; `undefined` for none. */
  shaping?: RequestShaping;
  /** The route's own transformResponse (`false`: none here); `undefined` to use the proxy-wide one. */
  transformResponse?: TransformRule | false;
  /** The route's own TLS setting; `undefined` to use the proxy-wide one. */
  tls?: TlsSettings;
}

const MAX_TIMER_MS = 2_147_483_647;

/** Every key a route object may have: any other is a mistake, refused with the closest name. */
const ROUTE_KEYS = [
  'target',
  'socketPath',
  'tls',
  'balance',
  'bodyLimit',
  'startupGrace',
  'requestHeaders',
  'removeCookies',
  'removeQuery',
  'timeouts',
  'changeOrigin',
  'forwarded',
  'rewriteLocation',
  'responseHeaders',
  'pathRewrite',
  'transformResponse',
] as const satisfies ReadonlyArray<keyof RouteTargetSettings | 'target' | 'socketPath'>;

function parseTargets(value: unknown, where: string): readonly URL[] {
  if (!Array.isArray(value)) return [parseTargetUrl(value, where)];
  if (value.length === 0) throw new TypeError(`${where} must name at least one upstream; got an empty array`);
  return value.map((entry, i) => parseTargetUrl(entry, `${where}[${i}]`));
}

/** Parses and checks a target; throws a TypeError that says where the bad value came from. */
export function normalizeTarget(value: unknown, where: string): ResolvedRoute {
  if (typeof value === 'string' || value instanceof URL || Array.isArray(value)) return { targets: parseTargets(value, where) };
  if (typeof value === 'object' && value !== null && ('target' in value || 'socketPath' in value)) {
    rejectUnknownKeys(value, ROUTE_KEYS, `${where}.`);
    const { target, socketPath, bodyLimit, startupGrace, balance, transformResponse, tls } = value as RouteTarget;
    if (target !== undefined && socketPath !== undefined) throw new TypeError(`${where} must name its upstream with target or with socketPath, not both`);
    const targets = socketPath === undefined ? parseTargets(target, `${where}.target`) : [parseSocketPath(socketPath, `${where}.socketPath`)];
    const route: ResolvedRoute = { targets, ...parseRouteSettings(value as Record<string, unknown>, where) };
    if (bodyLimit !== undefined) route.bodyLimit = parseBodyLimit(bodyLimit, `${where}.bodyLimit`);
    if (balance !== undefined) route.balance = compileBalance(balance, `${where}.balance`);
    if (startupGrace !== undefined) route.startupGrace = parseGrace(startupGrace, `${where}.startupGrace`);
    if (tls !== undefined) route.tls = routeTls(tls, targets, `${where}.tls`);
    const shaping = compileShaping(value as RouteTarget, where);
    if (shaping) route.shaping = shaping;
    const transform = compileTransform(transformResponse, `${where}.transformResponse`);
    if (transform !== undefined) route.transformResponse = transform;
    return route;
  }
  throw new TypeError(`${where} must be a URL string, a URL, an array of them, or { target | socketPath, ...settings }; got ${describe(value)}`);
}

/** A route's TLS setting, refused on a route it could never apply to. */
function routeTls(value: unknown, targets: readonly URL[], where: string): TlsSettings {
  const settings = parseTls(value, where);
  if (!targets.some((url) => url.protocol === 'https:')) throw new TypeError(`${where} applies to https: upstreams, and the route has none`);
  return settings;
}

/** A startup grace: whole ms from 0 (off) up to the largest timer. */
export function parseGrace(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TIMER_MS) return value;
  throw new TypeError(`${where} must be a whole number of milliseconds from 0 (off) to ${MAX_TIMER_MS}; got ${describe(value)}`);
}

const TARGET_FORMS = 'an absolute http: or https: URL, or unix:/path/to.sock';

function parseTargetUrl(value: unknown, where: string): URL {
  // Everything after `unix:` is the path, as written: no percent-decoding of a file name.
  if (typeof value === 'string' && value.startsWith('unix:')) return parseSocketPath(value.slice('unix:'.length), where);
  let url: URL;
  try {
    url = value instanceof URL ? new URL(value.href) : new URL(String(value));
  } catch {
    throw new TypeError(`${where} must be ${TARGET_FORMS}; got ${describe(value)}`);
  }
  if (url.protocol === 'unix:') {
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      throw new TypeError(`${where} must be ${TARGET_FORMS}; got ${describe(value)}`);
    }
    return parseSocketPath(path, where);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new TypeError(`${where} must be ${TARGET_FORMS}; got ${describe(value)}`);
  }
  return url;
}

/**
 * A socket path must be absolute: a relative one would be looked up from
 * whatever the working directory is at connect time.
 */
function parseSocketPath(value: unknown, where: string): URL {
  if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) {
    throw new TypeError(`${where} must be the absolute path of a unix domain socket, such as "/run/app.sock"; got ${describe(value)}`);
  }
  return unixUpstream(value);
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof URL) return JSON.stringify(value.href);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}
