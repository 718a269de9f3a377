import type { IncomingMessage } from 'node:http';
import { parseBodyLimit } from '../guards/body-limit.ts';
import { compileBalance, type BalanceOption, type BalancePolicy } from '../upstream/balance/options.ts';
import { rejectUnknownKeys } from '../option-checks.ts';
import { compileShaping, type RequestShaping, type RequestShapingOptions } from '../upstream/shaping-options.ts';
import { compileTransform, type TransformResponseOptions, type TransformRule } from '../upstream/transform-options.ts';
import { parseRouteSettings, type RouteSettings, type RouteSettingsOptions } from './route-settings.ts';

/** Where a route sends requests: an `http:` or `https:` URL. Its path is prepended. */
export type TargetUrl = string | URL;

/** A target with per-route settings; its requestHeaders, removeCookies and removeQuery add to the proxy-wide ones. */
export interface RouteTarget extends RequestShapingOptions<IncomingMessage>, RouteSettingsOptions<IncomingMessage> {
  /** One upstream, or several to balance between (by `balance`, with passive health). */
  target: TargetUrl | readonly TargetUrl[];
  /** Overrides the proxy-wide `balance` for this route. */
  balance?: BalanceOption<IncomingMessage>;
  /** Overrides the proxy-wide `bodyLimit` for this route. */
  bodyLimit?: number | string | false;
  /** Overrides the proxy-wide `startupGrace` for this route (ms). */
  startupGrace?: number;
  /** Replaces the proxy-wide `transformResponse` for this route; `false` transforms nothing here. */
  transformResponse?: TransformResponseOptions<IncomingMessage> | false;
}

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
}

const MAX_TIMER_MS = 2_147_483_647;

/** Every key a route object may have: any other is a mistake, refused with the closest name. */
const ROUTE_KEYS = [
  'target',
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
] as const satisfies ReadonlyArray<keyof RouteTarget>;

function parseTargets(value: unknown, where: string): readonly URL[] {
  if (!Array.isArray(value)) return [parseTargetUrl(value, where)];
  if (value.length === 0) throw new TypeError(`${where} must name at least one upstream; got an empty array`);
  return value.map((entry, i) => parseTargetUrl(entry, `${where}[${i}]`));
}

/** Parses and checks a target; throws a TypeError that says where the bad value came from. */
export function normalizeTarget(value: unknown, where: string): ResolvedRoute {
  if (typeof value === 'string' || value instanceof URL || Array.isArray(value)) return { targets: parseTargets(value, where) };
  if (typeof value === 'object' && value !== null && 'target' in value) {
    rejectUnknownKeys(value, ROUTE_KEYS, `${where}.`);
    const { target, bodyLimit, startupGrace, balance, transformResponse } = value as RouteTarget;
    const route: ResolvedRoute = { targets: parseTargets(target, `${where}.target`), ...parseRouteSettings(value as Record<string, unknown>, where) };
    if (bodyLimit !== undefined) route.bodyLimit = parseBodyLimit(bodyLimit, `${where}.bodyLimit`);
    if (balance !== undefined) route.balance = compileBalance(balance, `${where}.balance`);
    if (startupGrace !== undefined) route.startupGrace = parseGrace(startupGrace, `${where}.startupGrace`);
    const shaping = compileShaping(value as RouteTarget, where);
    if (shaping) route.shaping = shaping;
    const transform = compileTransform(transformResponse, `${where}.transformResponse`);
    if (transform !== undefined) route.transformResponse = transform;
    return route;
  }
  throw new TypeError(`${where} must be a URL string, a URL, an array of them, or { target, ...settings }; got ${describe(value)}`);
}

/** A startup grace: whole ms from 0 (off) up to the largest timer. */
export function parseGrace(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TIMER_MS) return value;
  throw new TypeError(`${where} must be a whole number of milliseconds from 0 (off) to ${MAX_TIMER_MS}; got ${describe(value)}`);
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
