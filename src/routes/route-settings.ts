import type { IncomingMessage } from 'node:http';
import { parseBodyLimit } from '../guards/body-limit.ts';
import { booleanOption, fail, isRecord, MAX_TIMER_MS, milliseconds, rejectUnknownKeys, show, type EveryKeyListed } from '../option-checks.ts';
import { compileBalance, type BalanceOption, type BalancePolicy } from '../upstream/balance/options.ts';
import type { ForwardedMode } from '../upstream/forwarded.ts';
import { compilePathRewrite, type PathRewrite, type PathRewriteOption } from '../upstream/path-rewrite.ts';
import { compileResponseHeaders, type ResponseHeadersOptions, type ResponseShaping } from '../upstream/response-headers.ts';
import { compileShaping, type RequestShaping, type RequestShapingOptions } from '../upstream/shaping-options.ts';
import type { ExchangeTimeouts } from '../upstream/timeouts.ts';
import { parseTls, type TlsSettings, type UpstreamTlsOptions } from '../upstream/tls.ts';
import { compileTransform, type TransformResponseOptions, type TransformRule } from '../upstream/transform-options.ts';

/**
 * Everything a route object may carry besides where it goes: each setting
 * overrides the proxy-wide option of the same name for that route's
 * requests (requestHeaders, removeCookies, removeQuery and responseHeaders
 * add to the proxy-wide ones). One validator, shared by record tables (at
 * createProxy) and route functions (on each result).
 */
export interface RouteSettingsOptions<Req extends IncomingMessage = IncomingMessage> extends RequestShapingOptions<Req> {
  /** Overrides the proxy-wide `balance` for this route. */
  balance?: BalanceOption<Req>;
  /** Overrides the proxy-wide `bodyLimit` for this route. */
  bodyLimit?: number | string | false;
  /** Overrides the proxy-wide `startupGrace` for this route (ms). */
  startupGrace?: number;
  /** Any of `connect`, `response`, `idle` (ms). */
  timeouts?: Partial<ExchangeTimeouts>;
  changeOrigin?: boolean;
  forwarded?: ForwardedMode;
  rewriteLocation?: boolean;
  responseHeaders?: ResponseHeadersOptions<Req>;
  pathRewrite?: PathRewriteOption<Req>;
  /** Replaces the proxy-wide `transformResponse` for this route; `false` transforms nothing here. */
  transformResponse?: TransformResponseOptions<Req> | false;
  /** TLS to this route's `https:` upstreams; replaces the proxy-wide `tls` whole. */
  tls?: UpstreamTlsOptions;
}

/** The settings checked and compiled; each `undefined` means the proxy-wide value. */
export interface RouteSettings {
  /** `undefined` to use the proxy-wide policy. */
  balance?: BalancePolicy;
  /** Bytes; `false` for no limit. */
  bodyLimit?: number | false;
  /** ms. */
  startupGrace?: number;
  timeouts?: Partial<ExchangeTimeouts>;
  changeOrigin?: boolean;
  forwarded?: ForwardedMode;
  rewriteLocation?: boolean;
  responseHeaders?: ResponseShaping;
  pathRewrite?: PathRewrite;
  /** The route's own request shaping, before the proxy-wide one is merged in. */
  shaping?: RequestShaping;
  /** The route's own transformResponse (`false`: none here). */
  transformResponse?: TransformRule | false;
  tls?: TlsSettings;
}

/** Every setting's name: with `target` and `socketPath`, all a route object may have. */
export const ROUTE_SETTING_NAMES = [
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
  'tls',
] as const satisfies ReadonlyArray<keyof RouteSettingsOptions>;
true satisfies EveryKeyListed<RouteSettingsOptions, (typeof ROUTE_SETTING_NAMES)[number]>;

const ROUTE_TIMEOUT_NAMES = ['connect', 'response', 'idle'] as const;

export const FORWARDED_MODES = "'x-forwarded', 'rfc7239', 'both' or false";

export function isForwardedMode(value: unknown): value is ForwardedMode {
  return value === false || value === 'x-forwarded' || value === 'rfc7239' || value === 'both';
}

/** A startup grace: whole ms from 0 (off) up to the largest timer. */
export function parseGrace(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TIMER_MS) return value;
  throw new TypeError(`${where} must be a whole number of milliseconds from 0 (off) to ${MAX_TIMER_MS}; got ${show(value)}`);
}

function routeTimeouts(value: unknown, where: string): Partial<ExchangeTimeouts> {
  if (!isRecord(value)) fail(`${where} must be an object { ${ROUTE_TIMEOUT_NAMES.join(', ')} }; got ${show(value)}`);
  // The lookup deadline runs before any route is known: it can only be proxy-wide.
  if ('route' in value) fail(`${where}.route cannot be set on a route: the lookup it bounds happens before the route is known; set timeouts.route on the proxy`);
  rejectUnknownKeys(value, ROUTE_TIMEOUT_NAMES, `${where}.`);
  const timeouts: Partial<ExchangeTimeouts> = {};
  for (const name of ROUTE_TIMEOUT_NAMES) if (value[name] !== undefined) timeouts[name] = milliseconds(value[name], `${where}.${name}`, 0);
  return timeouts;
}

/** A route's TLS setting, refused on a route it could never apply to. */
function routeTls(value: unknown, targets: readonly URL[], where: string): TlsSettings {
  const settings = parseTls(value, where);
  if (!targets.some((url) => url.protocol === 'https:')) throw new TypeError(`${where} applies to https: upstreams, and the route has none`);
  return settings;
}

/**
 * The settings a route object sets, checked and compiled (`targets` are its
 * upstreams, already parsed); the ones it leaves out stay unset. Unknown
 * keys are the caller's to refuse: it knows the object's other keys.
 */
export function parseRouteSettings(value: RouteSettingsOptions, targets: readonly URL[], where: string): RouteSettings {
  const settings: RouteSettings = {};
  if (value.balance !== undefined) settings.balance = compileBalance(value.balance, `${where}.balance`);
  if (value.bodyLimit !== undefined) settings.bodyLimit = parseBodyLimit(value.bodyLimit, `${where}.bodyLimit`);
  if (value.startupGrace !== undefined) settings.startupGrace = parseGrace(value.startupGrace, `${where}.startupGrace`);
  if (value.timeouts !== undefined) settings.timeouts = routeTimeouts(value.timeouts, `${where}.timeouts`);
  if (value.changeOrigin !== undefined) settings.changeOrigin = booleanOption(value.changeOrigin, `${where}.changeOrigin`, false);
  if (value.forwarded !== undefined) {
    if (!isForwardedMode(value.forwarded)) fail(`${where}.forwarded must be ${FORWARDED_MODES}; got ${show(value.forwarded)}`);
    settings.forwarded = value.forwarded;
  }
  if (value.rewriteLocation !== undefined) settings.rewriteLocation = booleanOption(value.rewriteLocation, `${where}.rewriteLocation`, true);
  const responseHeaders = compileResponseHeaders(value.responseHeaders, `${where}.responseHeaders`);
  if (responseHeaders) settings.responseHeaders = responseHeaders;
  const pathRewrite = compilePathRewrite(value.pathRewrite, `${where}.pathRewrite`);
  if (pathRewrite) settings.pathRewrite = pathRewrite;
  const shaping = compileShaping(value, where);
  if (shaping) settings.shaping = shaping;
  const transform = compileTransform(value.transformResponse, `${where}.transformResponse`);
  if (transform !== undefined) settings.transformResponse = transform;
  if (value.tls !== undefined) settings.tls = routeTls(value.tls, targets, `${where}.tls`);
  return settings;
}
