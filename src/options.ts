import http, { type IncomingMessage } from 'node:http';
import { DEFAULT_BODY_LIMIT, parseBodyLimit } from './guards/body-limit.ts';
import type { RateLimitOptions } from './guards/rate-limit.ts';
import type { Logger } from './logging.ts';
import type { AgentOption } from './upstream/agent.ts';
import type { ErrorFormat } from './respond.ts';
import { compileRoutes, type ProxyRequest, type RouteResolver, type Routes } from './routes/table.ts';
import { compileTrust, type ForwardedMode, type TrustFunction, type TrustProxy } from './upstream/forwarded.ts';
import type { MetricsOptions } from './observe/metrics.ts';
import { parseGrace } from './routes/target.ts';
import { DEFAULT_PASSIVE_HEALTH, type PassiveHealthOptions } from './upstream/balancer.ts';

export interface TimeoutOptions {
  /** No TCP connection to the upstream within this many ms: 504 `connection_timeout`. */
  connect?: number;
  /** No response headers within this many ms after the request was sent: 504 `http_response_timeout`. */
  response?: number;
  /** No byte either way for this many ms while a response streams: the exchange is aborted. */
  idle?: number;
}

export interface ProxyOptions<Req extends IncomingMessage = ProxyRequest> {
  /** Host -> target record, a function of the request, or `portHostRoutes(...)`. Required. */
  routes: Routes<Req>;
  /** A winston logger. Default: JSON lines to stderr at `info`. */
  logger?: Logger;
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
  /** For routes with several upstreams: when one is taken out of rotation (nginx's max_fails / fail_timeout). */
  passiveHealth?: PassiveHealthOptions;
  /** Register the proxy's metrics in this prom-client Registry (prom-client is an optional peer dependency). */
  metrics?: MetricsOptions;
}

export const DEFAULT_TIMEOUTS = { connect: 10_000, response: 60_000, idle: 300_000 } as const;

export interface ResolvedOptions {
  resolveRoute: RouteResolver;
  logger: Logger | undefined;
  errorFormat: ErrorFormat;
  proxyStatusName: string | false;
  onError: 'respond' | 'next';
  timeouts: { connect: number; response: number; idle: number };
  requestIdHeader: string | false;
  changeOrigin: boolean;
  rateLimit: RateLimitOptions | false;
  bodyLimit: number | false;
  agent: AgentOption | undefined;
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
  passiveHealth: Required<PassiveHealthOptions>;
  metrics: MetricsOptions | undefined;
}

const KNOWN_OPTIONS = new Set([
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
  'forwarded',
  'trustProxy',
  'via',
  'rewriteLocation',
  'cookieDomain',
  'cookiePath',
  'fallthrough',
  'consumedBody',
  'startupGrace',
  'passiveHealth',
  'metrics',
]);
// express-rate-limit v8 options the proxy passes on (`max` is its older name
// for `limit`), plus its own `onStoreError`.
const RATE_LIMIT_OPTIONS = new Set([
  'windowMs',
  'limit',
  'max',
  'keyGenerator',
  'ipv6Subnet',
  'skip',
  'skipSuccessfulRequests',
  'skipFailedRequests',
  'requestWasSuccessful',
  'store',
  'retryAfter',
  'identifier',
  'requestPropertyName',
  'validate',
  'logger',
  'passOnStoreError',
  'onStoreError',
]);
const MAX_TIMER_MS = 2_147_483_647;
// RFC 8941 sf-token, the form a Proxy-Status member name takes unquoted.
const SF_TOKEN = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** Raised for a bad option at construction; the message names the option and what it accepts. */
export class ProxyOptionsError extends TypeError {
  readonly code = 'ERR_HONEST_PROXY_OPTIONS';
  constructor(message: string) {
    super(`honest-proxy: ${message}`);
    this.name = 'ProxyOptionsError';
  }
}

function fail(message: string): never {
  throw new ProxyOptionsError(message);
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value !== null && typeof value === 'object') return 'an object';
  return String(value);
}

function milliseconds(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_TIMER_MS) {
    fail(`${name} must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}; got ${show(value)}`);
  }
  return value;
}

function isLogger(value: unknown): value is Logger {
  const candidate = value as Partial<Logger> | null;
  return typeof candidate?.log === 'function' && typeof candidate.isLevelEnabled === 'function';
}

/** Runs a validator that throws TypeError (shared with per-request code) and reports as an option error. */
function asOptionError<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof TypeError && !(err instanceof ProxyOptionsError)) fail(err.message);
    throw err;
  }
}

function isAgentOption(value: unknown): value is AgentOption {
  if (value instanceof http.Agent) return true;
  if (value === null || typeof value !== 'object') return false;
  const { http: plain, https: secure, ...rest } = value as Record<string, unknown>;
  return (
    Object.keys(rest).length === 0 &&
    (plain !== undefined || secure !== undefined) &&
    (plain === undefined || plain instanceof http.Agent) &&
    (secure === undefined || secure instanceof http.Agent)
  );
}

function isFunction(value: unknown): boolean {
  return typeof value === 'function';
}

function resolveRateLimit(value: unknown): RateLimitOptions | false {
  if (value === undefined || value === false) return false;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(`rateLimit must be false or express-rate-limit options { windowMs, limit, keyGenerator, skip, store, onStoreError... }; got ${show(value)}`);
  }
  // express-rate-limit options that shape the 429, which the proxy writes itself.
  const rendersTheResponse = new Map([
    ['handler', ''],
    ['message', ''],
    ['statusCode', ''],
    ['standardHeaders', ''],
    ['legacyHeaders', ''],
    ['headers', " (express-rate-limit's older name for legacyHeaders)"],
  ]);
  const options = value as Record<string, unknown>;
  for (const key of Object.keys(options)) {
    const aside = rendersTheResponse.get(key);
    if (aside !== undefined) {
      fail(
        `rateLimit.${key}${aside} is not accepted: the proxy renders the 429 itself, with Retry-After and the RateLimit headers; ` +
          "choose its body with errorFormat ('text', 'json' or a function), or pass the error on with onError: 'next'",
      );
    }
    if (!RATE_LIMIT_OPTIONS.has(key)) fail(`unknown option rateLimit.${key}; known are ${[...RATE_LIMIT_OPTIONS].map((k) => `rateLimit.${k}`).join(', ')}`);
  }
  const { windowMs, limit, max, keyGenerator, ipv6Subnet, skip, store, retryAfter, identifier, requestPropertyName, validate, logger, passOnStoreError, onStoreError } = options;
  if (windowMs !== undefined) milliseconds(windowMs, 'rateLimit.windowMs', 0);
  if (limit !== undefined && max !== undefined) fail('rateLimit.limit and rateLimit.max are one option (max is its older name); give only one');
  const [limitName, count] = max === undefined ? ['limit', limit] : ['max', max];
  if (!isFunction(count) && !(typeof count === 'number' && Number.isInteger(count) && count > 0)) {
    fail(`rateLimit.${limitName} must be a whole number above 0 or a function (req, res) => number; got ${show(count)}`);
  }
  if (keyGenerator !== undefined && !isFunction(keyGenerator)) fail(`rateLimit.keyGenerator must be a function (req, res) => string; got ${show(keyGenerator)}`);
  if (ipv6Subnet !== undefined) {
    if (ipv6Subnet !== false && !isFunction(ipv6Subnet) && !(typeof ipv6Subnet === 'number' && Number.isInteger(ipv6Subnet) && ipv6Subnet >= 1 && ipv6Subnet <= 128)) {
      fail(`rateLimit.ipv6Subnet must be a prefix length from 1 to 128, false, or a function (req, res) => number; got ${show(ipv6Subnet)}`);
    }
    if (keyGenerator !== undefined) {
      fail('rateLimit.ipv6Subnet applies to the default key only; with rateLimit.keyGenerator, call ipKeyGenerator(ip, prefix) in it instead');
    }
  }
  if (skip !== undefined && !isFunction(skip)) fail(`rateLimit.skip must be a function (req, res) => boolean; got ${show(skip)}`);
  booleanOption(options.skipSuccessfulRequests, 'rateLimit.skipSuccessfulRequests', false);
  booleanOption(options.skipFailedRequests, 'rateLimit.skipFailedRequests', false);
  if (options.requestWasSuccessful !== undefined && !isFunction(options.requestWasSuccessful)) {
    fail(`rateLimit.requestWasSuccessful must be a function (req, res) => boolean; got ${show(options.requestWasSuccessful)}`);
  }
  if (store !== undefined && typeof (store as { increment?: unknown } | null)?.increment !== 'function') {
    fail(`rateLimit.store must be an express-rate-limit Store (e.g. new RedisStore(...)); got ${show(store)}`);
  }
  if (retryAfter !== undefined && !isFunction(retryAfter) && !(typeof retryAfter === 'number' && Number.isInteger(retryAfter) && retryAfter >= 0)) {
    fail(`rateLimit.retryAfter must be a whole number of seconds or a function (req, res) => number; got ${show(retryAfter)}`);
  }
  if (identifier !== undefined && typeof identifier !== 'string' && !isFunction(identifier)) {
    fail(`rateLimit.identifier must be a string or a function (req, res) => string; got ${show(identifier)}`);
  }
  if (requestPropertyName !== undefined) {
    // A name the request already has (req.headers, req.body, req.ip...) would be overwritten with the counts.
    const taken = ['app', 'res', 'next', 'params', 'query', 'body', 'route', 'baseUrl', 'originalUrl', 'path', 'ip', 'ips', 'host', 'hostname', 'protocol', 'secure', 'subdomains', 'xhr', 'fresh', 'stale', 'cookies', 'signedCookies'];
    if (typeof requestPropertyName !== 'string' || !/^[A-Za-z_$][\w$]*$/.test(requestPropertyName) || requestPropertyName in new http.IncomingMessage(null as never) || taken.includes(requestPropertyName)) {
      fail(`rateLimit.requestPropertyName must be a property name the request does not already have, such as 'rateLimit'; got ${show(requestPropertyName)}`);
    }
  }
  const isChecks = (checks: unknown): boolean =>
    checks !== null && typeof checks === 'object' && !Array.isArray(checks) && Object.values(checks).every((v) => typeof v === 'boolean');
  if (validate !== undefined && typeof validate !== 'boolean' && !isChecks(validate)) {
    fail(`rateLimit.validate must be true, false, or a record of check names to true or false; got ${show(validate)}`);
  }
  if (logger !== undefined && !(isFunction((logger as { error?: unknown } | null)?.error) && isFunction((logger as { warn?: unknown }).warn))) {
    fail(`rateLimit.logger must be an object with error(err, message) and warn(err, message) methods; got ${show(logger)}`);
  }
  booleanOption(passOnStoreError, 'rateLimit.passOnStoreError', true);
  if (passOnStoreError !== undefined && onStoreError !== undefined) {
    fail("rateLimit.passOnStoreError and rateLimit.onStoreError say the same thing (true is 'allow', false is 'deny'); give only one");
  }
  if (onStoreError !== undefined && onStoreError !== 'allow' && onStoreError !== 'deny') {
    fail(`rateLimit.onStoreError must be 'allow' or 'deny'; got ${show(onStoreError)}`);
  }
  return options as unknown as RateLimitOptions;
}

function booleanOption(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(`${name} must be true or false; got ${show(value)}`);
  return value;
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

function resolvePassiveHealth(value: unknown): Required<PassiveHealthOptions> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`passiveHealth must be an object { maxFails, failTimeout }; got ${show(value)}`);
  const { maxFails = DEFAULT_PASSIVE_HEALTH.maxFails, failTimeout, ...rest } = value as PassiveHealthOptions;
  for (const key of Object.keys(rest)) fail(`unknown option passiveHealth.${key}; known are passiveHealth.maxFails, passiveHealth.failTimeout`);
  if (!Number.isInteger(maxFails) || maxFails < 1) fail(`passiveHealth.maxFails must be a whole number from 1; got ${show(maxFails)}`);
  return { maxFails, failTimeout: milliseconds(failTimeout, 'passiveHealth.failTimeout', DEFAULT_PASSIVE_HEALTH.failTimeout) };
}

function resolveMetrics(value: unknown): MetricsOptions | undefined {
  if (value === undefined) return undefined;
  const registry = (value as { registry?: { registerMetric?: unknown } } | null)?.registry;
  if (typeof registry?.registerMetric !== 'function') fail(`metrics must be { registry } with a prom-client Registry; got ${show(value)}`);
  return value as MetricsOptions;
}

/** Checks every option once, at construction, and fills in defaults. */
export function resolveOptions<Req extends IncomingMessage>(options: ProxyOptions<Req>): ResolvedOptions {
  if (options === null || typeof options !== 'object') fail(`createProxy(options) needs an options object; got ${show(options)}`);
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) fail(`unknown option ${JSON.stringify(key)}; known options are ${[...KNOWN_OPTIONS].join(', ')}`);
  }
  const {
    routes,
    logger,
    errorFormat = 'text',
    proxyStatus = 'proxy',
    onError = 'respond',
    timeouts = {},
    requestIdHeader = 'x-request-id',
    changeOrigin = false,
    rateLimit,
    bodyLimit = DEFAULT_BODY_LIMIT,
    agent,
    forwarded = 'x-forwarded',
    trustProxy,
    via = false,
    rewriteLocation,
    cookieDomain,
    cookiePath,
    fallthrough,
    consumedBody = 'error',
    startupGrace = 0,
    passiveHealth = {},
    metrics,
  } = options;

  if (routes === undefined) fail('routes is required: a record of host -> target, a function (req) => target, or portHostRoutes(...)');
  if (logger !== undefined && !isLogger(logger)) fail(`logger must be a winston Logger; got ${show(logger)}`);
  if (errorFormat !== 'text' && errorFormat !== 'json' && typeof errorFormat !== 'function') {
    fail(`errorFormat must be 'text', 'json' or a function (error, req) => { contentType, body }; got ${show(errorFormat)}`);
  }
  if (proxyStatus !== false && (typeof proxyStatus !== 'string' || !SF_TOKEN.test(proxyStatus))) {
    fail(`proxyStatus must be false or a name made of letters, digits and _-.:/ starting with a letter; got ${show(proxyStatus)}`);
  }
  if (onError !== 'respond' && onError !== 'next') fail(`onError must be 'respond' or 'next'; got ${show(onError)}`);
  if (timeouts === null || typeof timeouts !== 'object') fail(`timeouts must be an object { connect, response }; got ${show(timeouts)}`);
  for (const key of Object.keys(timeouts)) {
    if (key !== 'connect' && key !== 'response' && key !== 'idle') {
      fail(`unknown option timeouts.${key}; known are timeouts.connect, timeouts.response, timeouts.idle`);
    }
  }
  if (requestIdHeader !== false && (typeof requestIdHeader !== 'string' || !HEADER_NAME.test(requestIdHeader))) {
    fail(`requestIdHeader must be false or a header name; got ${show(requestIdHeader)}`);
  }
  booleanOption(changeOrigin, 'changeOrigin', false);
  if (agent !== undefined && !isAgentOption(agent)) fail(`agent must be an http.Agent or { http?: http.Agent, https?: https.Agent }; got ${show(agent)}`);
  if (forwarded !== false && forwarded !== 'x-forwarded' && forwarded !== 'rfc7239' && forwarded !== 'both') {
    fail(`forwarded must be 'x-forwarded', 'rfc7239', 'both' or false; got ${show(forwarded)}`);
  }
  if (via !== false && (typeof via !== 'string' || !SF_TOKEN.test(via))) fail(`via must be false or a name made of letters, digits and _-.:/; got ${show(via)}`);
  if (consumedBody !== 'error' && consumedBody !== 'reserialize') fail(`consumedBody must be 'error' or 'reserialize'; got ${show(consumedBody)}`);

  return {
    resolveRoute: asOptionError(() => compileRoutes(routes)),
    logger,
    errorFormat,
    proxyStatusName: proxyStatus,
    onError,
    timeouts: {
      connect: milliseconds(timeouts.connect, 'timeouts.connect', DEFAULT_TIMEOUTS.connect),
      response: milliseconds(timeouts.response, 'timeouts.response', DEFAULT_TIMEOUTS.response),
      idle: milliseconds(timeouts.idle, 'timeouts.idle', DEFAULT_TIMEOUTS.idle),
    },
    requestIdHeader: requestIdHeader === false ? false : requestIdHeader.toLowerCase(),
    changeOrigin,
    rateLimit: resolveRateLimit(rateLimit),
    bodyLimit: asOptionError(() => parseBodyLimit(bodyLimit, 'bodyLimit')),
    agent,
    forwarded,
    trust: trustOption(trustProxy),
    via,
    rewriteLocation: booleanOption(rewriteLocation, 'rewriteLocation', true),
    cookieDomain: cookieRewrite(cookieDomain, 'cookieDomain'),
    cookiePath: cookieRewrite(cookiePath, 'cookiePath'),
    fallthrough: booleanOption(fallthrough, 'fallthrough', false),
    consumedBody,
    startupGrace: asOptionError(() => parseGrace(startupGrace, 'startupGrace')),
    passiveHealth: resolvePassiveHealth(passiveHealth),
    metrics: resolveMetrics(metrics),
  };
}
