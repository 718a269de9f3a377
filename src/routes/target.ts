import { rejectUnknownKeys } from '../option-checks.ts';
import { unixUpstream } from '../upstream/address.ts';
import { parseRouteSettings, ROUTE_SETTING_NAMES, type RouteSettings, type RouteSettingsOptions } from './route-settings.ts';

/**
 * Where a route sends requests: an `http:` or `https:` URL, whose path is
 * prepended, or `unix:/path/to/app.sock` for a unix domain socket.
 */
export type TargetUrl = string | URL;

/**
 * A target with per-route settings; its requestHeaders, removeCookies and
 * removeQuery add to the proxy-wide ones. It names its upstream with
 * `target`, or with `socketPath` for a unix domain socket.
 */
export type RouteTarget = RouteSettingsOptions &
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
}

/** Every key a route object may have: any other is a mistake, refused with the closest name. */
const ROUTE_KEYS = ['target', 'socketPath', ...ROUTE_SETTING_NAMES];

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
    const { target, socketPath } = value as RouteTarget;
    if (target !== undefined && socketPath !== undefined) throw new TypeError(`${where} must name its upstream with target or with socketPath, not both`);
    const targets = socketPath === undefined ? parseTargets(target, `${where}.target`) : [parseSocketPath(socketPath, `${where}.socketPath`)];
    return { targets, ...parseRouteSettings(value as RouteSettingsOptions, targets, where) };
  }
  throw new TypeError(`${where} must be a URL string, a URL, an array of them, or { target | socketPath, ...settings }; got ${describe(value)}`);
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
