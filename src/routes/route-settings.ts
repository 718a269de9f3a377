import type { IncomingMessage } from 'node:http';
import { booleanOption, fail, isRecord, milliseconds, rejectUnknownKeys, show } from '../option-checks.ts';
import type { ForwardedMode } from '../upstream/forwarded.ts';
import { compilePathRewrite, type PathRewrite, type PathRewriteOption } from '../upstream/path-rewrite.ts';
import { compileResponseHeaders, type ResponseHeadersOptions, type ResponseShaping } from '../upstream/response-headers.ts';
import type { ExchangeTimeouts } from '../upstream/timeouts.ts';

/**
 * The settings a route object may carry that override a proxy-wide option
 * of the same name for that route's requests. One validator, shared by
 * record tables (at createProxy) and route functions (on each result).
 */
export interface RouteSettingsOptions<Req extends IncomingMessage = IncomingMessage> {
  /** Any of `connect`, `response`, `idle` (ms). */
  timeouts?: Partial<ExchangeTimeouts>;
  changeOrigin?: boolean;
  forwarded?: ForwardedMode;
  rewriteLocation?: boolean;
  responseHeaders?: ResponseHeadersOptions<Req>;
  pathRewrite?: PathRewriteOption<Req>;
}

export interface RouteSettings {
  timeouts?: Partial<ExchangeTimeouts>;
  changeOrigin?: boolean;
  forwarded?: ForwardedMode;
  rewriteLocation?: boolean;
  responseHeaders?: ResponseShaping;
  pathRewrite?: PathRewrite;
}

const ROUTE_TIMEOUT_NAMES = ['connect', 'response', 'idle'] as const;

export const FORWARDED_MODES = "'x-forwarded', 'rfc7239', 'both' or false";

export function isForwardedMode(value: unknown): value is ForwardedMode {
  return value === false || value === 'x-forwarded' || value === 'rfc7239' || value === 'both';
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

/** The overrides a route object sets, checked and compiled; fields it leaves out stay unset. */
export function parseRouteSettings(value: Record<string, unknown>, where: string): RouteSettings {
  const settings: RouteSettings = {};
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
  return settings;
}
