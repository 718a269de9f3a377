import http, { type IncomingMessage } from 'node:http';
import { DEFAULT_BODY_LIMIT, parseBodyLimit } from './guards/body-limit.ts';
import type { RateLimitOptions } from './guards/rate-limit.ts';
import { resolveRateLimit } from './guards/rate-limit-options.ts';
import { adaptLogger, type LoggerOption } from './logger-adapters.ts';
import type { Logger } from './logging.ts';
import { booleanOption, fail, isRecord, milliseconds, ProxyOptionsError, rejectUnknownKeys, show, type EveryKeyListed } from './option-checks.ts';
import { compileBalance, ROUND_ROBIN, type BalanceOption, type BalancePolicy } from './upstream/balance/options.ts';
import type { AgentOption } from './upstream/agent.ts';
import type { ErrorFormat } from './respond.ts';
import { portHostRoutes } from './routes/port-host.ts';
import { compileRoutes, type ProxyRequest, type RouteResolver, type Routes } from './routes/table.ts';
import { compileTrust, type ForwardedMode, type TrustFunction, type TrustProxy } from './upstream/forwarded.ts';
import { resolveMetrics, type MetricsOptions, type MetricsSettings } from './observe/metrics.ts';
import { resolveActivity, type ActivityListener, type ActivitySettings } from './observe/activity.ts';
import { resolveFoldWindow } from './observe/failure-log.ts';
import { routeKeyOf, type RouteKey } from './routes/route-key.ts';
import { resolveLingeringClose, type LingeringCloseOptions, type LingeringLimits } from './client/lingering-close.ts';
import { DEFAULT_ROUTE_TIMEOUT } from './routes/deadline.ts';
import { routeCacheOf, type RouteCacheLink } from './routes/cache.ts';
import { DEFAULT_PASSIVE_HEALTH, type PassiveHealthOptions } from './upstream/balancer.ts';
import { compileShaping, type RequestShaping, type RequestShapingOptions } from './upstream/shaping-options.ts';
import { FORWARDED_MODES, isForwardedMode, parseGrace } from './routes/route-settings.ts';
import { compilePathRewrite, type PathRewrite, type PathRewriteOption } from './upstream/path-rewrite.ts';
import { compileResponseHeaders, type ResponseHeadersOptions, type ResponseShaping } from './upstream/response-headers.ts';
import { compileTransform, type TransformResponseOptions, type TransformRule } from './upstream/transform-options.ts';
import { parseTls, type TlsSettings, type UpstreamTlsOptions } from './upstream/tls.ts';

export interface TimeoutOptions {
  /** No TCP connection to the upstream within this many ms: 504 `connection_timeout`. */
  connect?: number;
  /** No response headers within this many ms after the request was sent: 504 `http_response_timeout`. */
  response?: number;
  /** No byte either way for this many ms while a response streams: the exchange is aborted. */
  idle?: number;
  /** A route function (or portHostRoutes' resolve) that has not answered within this many ms: 504, and its signal aborts. */
  route?: number;
}

// Defined beside the shared checks (src/option-checks.ts); public from here, with the options.
export { ProxyOptionsError };

export interface ProxyOptions<Req extends IncomingMessage = ProxyRequest> {
  /** Host -> target record, a function of the request, or `portHostRoutes(...)`. Required. */
  routes: Routes<Req>;
  /**
   * A winston Logger; any object with `error`, `warn`, `info` and `debug`
   * methods, such as `console` or a pino logger; or `false` to log nothing.
   * Default: winston, JSON lines to stderr at `info`.
   */
  logger?: LoggerOption;
  /** Body of proxy error responses: `'text'` (default), `'json'`, or a renderer function. */
  errorFormat?: ErrorFormat;
  /** Name in `Proxy-Status: <name>; error=<type>` on proxy errors, or `false` for no header. Default `'proxy'`. */
  proxyStatus?: string | false;
  /** `'respond'` (default) writes the error response; `'next'` passes the ProxyError to `next(err)`. */
  onError?: 'respond' | 'next';
  timeouts?: TimeoutOptions;
  /** Header that carries the request id to the upstream and back on error responses, or false. Default `'x-request-id'`. */
  requestIdHeader?: string | false;
  /** Send the upstream's host in the Host header instead of the client's. Default false. */
  changeOrigin?: boolean;
  /** express-rate-limit options, or `false` (default: limits depend on who the clients are). */
  rateLimit?: RateLimitOptions | false;
  /** Largest request body: bytes, a size such as '10mb', or `false`. Default 10 MiB. A route may override it. */
  bodyLimit?: number | string | false;
  /** Your own upstream pool: an http.Agent, or { http, https }. Default: a keep-alive pool per proxy. */
  agent?: AgentOption;
  /**
   * `{ ca, cert, key, passphrase, servername, rejectUnauthorized }`: how the
   * proxy speaks TLS to `https:` upstreams (a private CA, a client certificate).
   * A route's own `tls` replaces it whole. Each setting gets its own keep-alive pool.
   */
  tls?: UpstreamTlsOptions;
  /**
   * Which forwarding headers the upstream gets: `'x-forwarded'` (default:
   * X-Forwarded-For, -Proto, -Host, -Port), `'rfc7239'` (`Forwarded`),
   * `'both'`, or `false`. Incoming ones are kept only from a trusted peer.
   */
  forwarded?: ForwardedMode;
  /**
   * Which peers may speak for the client, in Express's `trust proxy` forms
   * (true, a hop count, addresses or subnets, 'loopback', a function). Default:
   * the Express app's own `trust proxy`; outside Express, nobody.
   */
  trustProxy?: TrustProxy;
  /** A name to append to `Via` as `1.1 <name>`, or `false` (default) for no Via. */
  via?: string | false;
  /**
   * Rewrite a `Location` or `Content-Location` that points at the upstream
   * (or at localhost, 127.0.0.1 or [::1] on its port) to the origin the client
   * used plus the mount path; root-relative ones get the mount path. Default true.
   */
  rewriteLocation?: boolean;
  /** Rewrite the Domain of upstream cookies: one domain for all, or `{ from: to }` ('*' for any, '' to remove). Default false. */
  cookieDomain?: string | Readonly<Record<string, string>> | false;
  /** Rewrite the Path of upstream cookies, in the same forms as `cookieDomain`. Default false. */
  cookiePath?: string | Readonly<Record<string, string>> | false;
  /** With no route for the host, call `next()` so the app's later routes answer, instead of a 404. Default false. */
  fallthrough?: boolean;
  /**
   * A body an earlier middleware (a body parser) already read: `'error'`
   * (default) answers 500 and sends nothing upstream; `'reserialize'` forwards
   * `req.body` re-encoded (JSON, urlencoded, text, Buffer).
   */
  consumedBody?: 'error' | 'reserialize';
  /**
   * ms to keep retrying the connect while an upstream refuses connections (a
   * dev server still booting), before the 502. Default 0 (off); a route may
   * set its own.
   */
  startupGrace?: number;
  /**
   * For routes with several upstreams: how one is chosen. `'round-robin'`
   * (default), `'least-connections'`, or one that keeps a client on its
   * upstream: `'ip-hash'`, `{ cookie: 'name' }`, `{ hash: (req) => key }`.
   * A route may set its own.
   */
  balance?: BalanceOption<Req>;
  /** For routes with several upstreams: when one is taken out of rotation (nginx's max_fails / fail_timeout). */
  passiveHealth?: PassiveHealthOptions;
  /**
   * `{ registry, name?, routeLabel?, maxRouteLabels? }`: register the proxy's metrics in this
   * prom-client Registry, its series labelled `proxy: name` (prom-client is an optional peer dependency).
   */
  metrics?: MetricsOptions;
  /**
   * Told `(key, { kind, openConnections })` when traffic for a route passes
   * (key: portHostRoutes' sandbox id, else the host), at most once per
   * `activityInterval` per key, and again each interval while a WebSocket or
   * a response stays open: what a platform needs to stop idle sandboxes.
   * Never awaited; a throw or rejection is logged.
   */
  onActivity?: ActivityListener;
  /** ms between two `onActivity` reports for one key. Default 30000. */
  activityInterval?: number;
  /**
   * When the proxy answers early (413, 404, 429...) and closes while the
   * client is still sending its body, it first reads and drops what the
   * client sends, within these bounds, so the client reads the answer
   * instead of a reset (nginx's lingering close). Default `{ time: 30000,
   * timeout: 5000, bytes: '256mb' }`.
   */
  lingeringClose?: LingeringCloseOptions;
  /** `{ remove: [names], set: { name: value | (req, route) => value } }`: headers the upstream never gets, or gets from the proxy. A route may add its own. */
  requestHeaders?: RequestShapingOptions<Req>['requestHeaders'];
  /** Cookie names (or RegExps) dropped from the Cookie header the upstream gets. A route may add its own. */
  removeCookies?: RequestShapingOptions<Req>['removeCookies'];
  /** Query parameter names dropped from the request-target the upstream gets. A route may add its own. */
  removeQuery?: RequestShapingOptions<Req>['removeQuery'];
  /**
   * `{ remove: [names], set: { name: value | (upstreamResponse, req) => value } }`:
   * headers taken off, or given, on every upstream response (never on the
   * proxy's own error responses). A route may add its own.
   */
  responseHeaders?: ResponseHeadersOptions<Req>;
  /**
   * The request-target the upstream gets: a function `(path, req) => path`
   * or a record `{ '/prefix': '/replacement' }`, applied after the mount is
   * stripped. A route may set its own.
   */
  pathRewrite?: PathRewriteOption<Req>;
  /**
   * `{ when: ({ status, headers, req }) => boolean, transform: (context) => Transform }`:
   * rewrite the bodies `when` chooses as they stream (gzip, deflate and br
   * decoded first; the result is sent unencoded). A route may set its own, or `false`.
   */
  transformResponse?: TransformResponseOptions<Req> | false;
  /**
   * The same upstream failure (host, upstream, code, cause; for anything but a
   * failed connect also method and path) again within this many ms is counted,
   * not logged: the first is logged in full, and one record with `folded: N`
   * closes the window. Warn records only (unreachable, timed out, broken
   * upstreams); metrics count every failure. Default 1000; `false` logs every
   * failure.
   */
  foldRepeatedFailures?: number | false;
}

// `satisfies`: a timeout added to TimeoutOptions without a default here (or
// the reverse) does not compile, and the names below come from this one object.
export const DEFAULT_TIMEOUTS = { connect: 10_000, response: 60_000, idle: 300_000, route: DEFAULT_ROUTE_TIMEOUT } as const satisfies Required<TimeoutOptions>;
const TIMEOUT_NAMES = Object.keys(DEFAULT_TIMEOUTS) as Array<keyof TimeoutOptions>;

export interface ResolvedOptions {
  resolveRoute: RouteResolver;
  logger: Logger | undefined;
  errorFormat: ErrorFormat;
  proxyStatusName: string | false;
  onError: 'respond' | 'next';
  timeouts: Required<TimeoutOptions>;
  requestIdHeader: string | false;
  changeOrigin: boolean;
  rateLimit: RateLimitOptions | false;
  bodyLimit: number | false;
  agent: AgentOption | undefined;
  tls: TlsSettings | undefined;
  forwarded: ForwardedMode;
  /** From the `trustProxy` option; undefined means the Express app's setting. */
  trust: TrustFunction | undefined;
  via: string | false;
  rewriteLocation: boolean;
  cookieDomain: Readonly<Record<string, string>> | undefined;
  cookiePath: Readonly<Record<string, string>> | undefined;
  fallthrough: boolean;
  consumedBody: 'error' | 'reserialize';
  startupGrace: number;
  balance: BalancePolicy;
  passiveHealth: Required<PassiveHealthOptions>;
  metrics: MetricsSettings | undefined;
  activity: ActivitySettings | undefined;
  /** What activity and the `route` label know a route by: the host, or the route function's own key. */
  routeKey: RouteKey;
  /** The cache in front of `routes` (cachedRoutes, portHostRoutes({ cache })), if any. */
  routeCache: RouteCacheLink | undefined;
  lingeringClose: LingeringLimits;
  /** requestHeaders, removeCookies and removeQuery compiled; undefined when they shape nothing. */
  requestShaping: RequestShaping | undefined;
  responseHeaders: ResponseShaping | undefined;
  pathRewrite: PathRewrite | undefined;
  /** The proxy-wide transformResponse; undefined when unset or false. */
  transformResponse: TransformRule | undefined;
  foldRepeatedFailures: number | false;
}

const KNOWN_OPTIONS = [
  'routes',
  'logger',
  'errorFormat',
  'proxyStatus',
  'onError',
  'timeouts',
  'requestIdHeader',
  'changeOrigin',
  'rateLimit',
  'bodyLimit',
  'agent',
  'tls',
  'forwarded',
  'trustProxy',
  'via',
  'rewriteLocation',
  'cookieDomain',
  'cookiePath',
  'fallthrough',
  'consumedBody',
  'startupGrace',
  'balance',
  'passiveHealth',
  'metrics',
  'onActivity',
  'activityInterval',
  'lingeringClose',
  'requestHeaders',
  'removeCookies',
  'removeQuery',
  'responseHeaders',
  'pathRewrite',
  'transformResponse',
  'foldRepeatedFailures',
] as const satisfies ReadonlyArray<keyof ProxyOptions>;
true satisfies EveryKeyListed<ProxyOptions, (typeof KNOWN_OPTIONS)[number]>;

// RFC 8941 sf-token, the form a Proxy-Status member name takes unquoted.
const SF_TOKEN = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** Runs a validator that throws TypeError (shared with per-request code) and reports as an option error. */
function asOptionError<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof TypeError && !(err instanceof ProxyOptionsError)) fail(err.message);
    throw err;
  }
}

function resolveRoutes(routes: unknown, timeoutMs: number): RouteResolver {
  if (routes === undefined) fail('routes is required: a record of host -> target, a function (req) => target, or portHostRoutes(...)');
  // Uncalled, it looks like a route function and would fail every request with a 500.
  if (routes === portHostRoutes) fail('routes: portHostRoutes must be called with its options: routes: portHostRoutes({ domain, resolve })');
  return asOptionError(() => compileRoutes(routes, timeoutMs));
}

function resolveLogger(value: unknown): Logger | undefined {
  const logger = adaptLogger(value);
  if (logger === 'invalid') {
    fail(`logger must be a winston Logger, an object with error, warn, info and debug methods (console, pino), or false for none; got ${show(value)}`);
  }
  return logger;
}

function resolveTimeouts(value: unknown): ResolvedOptions['timeouts'] {
  if (value === undefined) return { ...DEFAULT_TIMEOUTS };
  if (!isRecord(value)) fail(`timeouts must be an object { ${TIMEOUT_NAMES.join(', ')} }; got ${show(value)}`);
  rejectUnknownKeys(value, TIMEOUT_NAMES, 'timeouts.');
  const timeouts = { ...DEFAULT_TIMEOUTS } as ResolvedOptions['timeouts'];
  for (const name of TIMEOUT_NAMES) timeouts[name] = milliseconds(value[name], `timeouts.${name}`, DEFAULT_TIMEOUTS[name]);
  return timeouts;
}

function resolveAgent(value: unknown): AgentOption | undefined {
  if (value === undefined || value instanceof http.Agent) return value;
  const expected = 'agent must be an http.Agent or { http?: http.Agent, https?: https.Agent }';
  if (!isRecord(value)) fail(`${expected}; got ${show(value)}`);
  rejectUnknownKeys(value, ['http', 'https'], 'agent.');
  const { http: plain, https: secure } = value;
  if ((plain === undefined && secure === undefined) || (plain !== undefined && !(plain instanceof http.Agent)) || (secure !== undefined && !(secure instanceof http.Agent))) {
    fail(`${expected}; got ${show(value)}`);
  }
  return value as AgentOption;
}

/** The proxy-wide TLS setting; it needs the proxy's own https pool, so not with a user's https agent. */
function resolveTls(value: unknown, agent: unknown): TlsSettings | undefined {
  if (value === undefined) return undefined;
  if (agent instanceof http.Agent || (isRecord(agent) && agent.https !== undefined)) {
    fail('tls and an https agent both say how to reach https upstreams: give your agent the TLS options, or leave agent.https out');
  }
  return parseTls(value, 'tls');
}

/** `cookieDomain` / `cookiePath`: a string for every cookie, or a map with '*' as the fallback. */
function cookieRewrite(value: unknown, name: string): Readonly<Record<string, string>> | undefined {
  if (value === undefined || value === false) return undefined;
  if (typeof value === 'string') return { '*': value };
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.values(value).every((v) => typeof v === 'string')) {
    return { ...(value as Record<string, string>) };
  }
  fail(`${name} must be false, a string, or a record of strings { from: to } ('*' for any); got ${show(value)}`);
}

function trustOption(value: unknown): TrustFunction | undefined {
  if (value === undefined) return undefined;
  const isList = Array.isArray(value) && value.every((entry) => typeof entry === 'string');
  const isHops = typeof value === 'number' && Number.isInteger(value) && value >= 0;
  if (typeof value !== 'boolean' && typeof value !== 'string' && typeof value !== 'function' && !isList && !isHops) {
    fail(`trustProxy must be true, false, a hop count, addresses or subnets ('loopback', '10.0.0.0/8'...), or a function (address, hop) => boolean; got ${show(value)}`);
  }
  try {
    return compileTrust(value as TrustProxy);
  } catch (err) {
    fail(`trustProxy: ${err instanceof Error ? err.message : String(err)}`);
  }
}

const PASSIVE_HEALTH_NAMES = Object.keys(DEFAULT_PASSIVE_HEALTH);

function resolvePassiveHealth(value: unknown): Required<PassiveHealthOptions> {
  if (value === undefined) return { ...DEFAULT_PASSIVE_HEALTH };
  if (!isRecord(value)) fail(`passiveHealth must be an object { ${PASSIVE_HEALTH_NAMES.join(', ')} }; got ${show(value)}`);
  rejectUnknownKeys(value, PASSIVE_HEALTH_NAMES, 'passiveHealth.');
  const { maxFails = DEFAULT_PASSIVE_HEALTH.maxFails, failTimeout } = value as PassiveHealthOptions;
  if (!Number.isInteger(maxFails) || maxFails < 1) fail(`passiveHealth.maxFails must be a whole number from 1; got ${show(maxFails)}`);
  return { maxFails, failTimeout: milliseconds(failTimeout, 'passiveHealth.failTimeout', DEFAULT_PASSIVE_HEALTH.failTimeout) };
}

/** Checks every option once, at construction, and fills in defaults. */
export function resolveOptions<Req extends IncomingMessage>(options: ProxyOptions<Req>): ResolvedOptions {
  if (options === null || typeof options !== 'object') fail(`createProxy(options) needs an options object; got ${show(options)}`);
  rejectUnknownKeys(options, KNOWN_OPTIONS);
  const {
    routes,
    logger,
    errorFormat = 'text',
    proxyStatus = 'proxy',
    onError = 'respond',
    timeouts,
    requestIdHeader = 'x-request-id',
    changeOrigin = false,
    rateLimit,
    bodyLimit = DEFAULT_BODY_LIMIT,
    agent,
    tls,
    forwarded = 'x-forwarded',
    trustProxy,
    via = false,
    rewriteLocation,
    cookieDomain,
    cookiePath,
    fallthrough,
    consumedBody = 'error',
    startupGrace = 0,
    balance,
    passiveHealth,
    metrics,
    onActivity,
    activityInterval,
    lingeringClose,
    requestHeaders,
    removeCookies,
    removeQuery,
    responseHeaders,
    pathRewrite,
    transformResponse,
    foldRepeatedFailures,
  } = options;

  const resolvedTimeouts = resolveTimeouts(timeouts);
  const resolveRoute = resolveRoutes(routes, resolvedTimeouts.route);
  if (errorFormat !== 'text' && errorFormat !== 'json' && typeof errorFormat !== 'function') {
    fail(`errorFormat must be 'text', 'json' or a function (error, req) => { contentType, body }; got ${show(errorFormat)}`);
  }
  if (proxyStatus !== false && (typeof proxyStatus !== 'string' || !SF_TOKEN.test(proxyStatus))) {
    fail(`proxyStatus must be false or a name made of letters, digits and _-.:/ starting with a letter; got ${show(proxyStatus)}`);
  }
  if (onError !== 'respond' && onError !== 'next') fail(`onError must be 'respond' or 'next'; got ${show(onError)}`);
  if (requestIdHeader !== false && (typeof requestIdHeader !== 'string' || !HEADER_NAME.test(requestIdHeader))) {
    fail(`requestIdHeader must be false or a header name; got ${show(requestIdHeader)}`);
  }
  booleanOption(changeOrigin, 'changeOrigin', false);
  if (!isForwardedMode(forwarded)) fail(`forwarded must be ${FORWARDED_MODES}; got ${show(forwarded)}`);
  if (via !== false && (typeof via !== 'string' || !SF_TOKEN.test(via))) fail(`via must be false or a name made of letters, digits and _-.:/; got ${show(via)}`);
  if (consumedBody !== 'error' && consumedBody !== 'reserialize') fail(`consumedBody must be 'error' or 'reserialize'; got ${show(consumedBody)}`);

  return {
    resolveRoute,
    logger: resolveLogger(logger),
    errorFormat,
    proxyStatusName: proxyStatus,
    onError,
    timeouts: resolvedTimeouts,
    requestIdHeader: requestIdHeader === false ? false : requestIdHeader.toLowerCase(),
    changeOrigin,
    rateLimit: resolveRateLimit(rateLimit),
    bodyLimit: asOptionError(() => parseBodyLimit(bodyLimit, 'bodyLimit')),
    agent: resolveAgent(agent),
    tls: resolveTls(tls, agent),
    forwarded,
    trust: trustOption(trustProxy),
    via,
    rewriteLocation: booleanOption(rewriteLocation, 'rewriteLocation', true),
    cookieDomain: cookieRewrite(cookieDomain, 'cookieDomain'),
    cookiePath: cookieRewrite(cookiePath, 'cookiePath'),
    fallthrough: booleanOption(fallthrough, 'fallthrough', false),
    consumedBody,
    startupGrace: asOptionError(() => parseGrace(startupGrace, 'startupGrace')),
    balance: balance === undefined ? ROUND_ROBIN : compileBalance(balance, 'balance'),
    passiveHealth: resolvePassiveHealth(passiveHealth),
    metrics: resolveMetrics(metrics),
    activity: resolveActivity(onActivity, activityInterval),
    routeKey: routeKeyOf(routes),
    routeCache: routeCacheOf(routes),
    lingeringClose: resolveLingeringClose(lingeringClose),
    requestShaping: compileShaping({ requestHeaders, removeCookies, removeQuery }),
    responseHeaders: compileResponseHeaders(responseHeaders, 'responseHeaders'),
    pathRewrite: compilePathRewrite(pathRewrite, 'pathRewrite'),
    transformResponse: compileTransform(transformResponse, 'transformResponse') || undefined,
    foldRepeatedFailures: resolveFoldWindow(foldRepeatedFailures),
  };
}
