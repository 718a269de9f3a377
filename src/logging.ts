import type { IncomingMessage } from 'node:http';
import { types } from 'node:util';
import winston from 'winston';
import type { ProxyError, ProxyErrorCode } from './errors.ts';
import { upstreamId } from './upstream/address.ts';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * What the proxy logs through. A winston Logger is one as it is, so the
 * default path calls winston directly; the other values the `logger` option
 * takes (console, pino, false) are adapted to it once, at construction
 * (src/logger-adapters.ts).
 */
export interface Logger {
  isLevelEnabled(level: LogLevel): boolean;
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
}

/** JSON lines to stderr at `info`, so a proxy's stdout stays the app's. */
export function createDefaultLogger(): Logger {
  return winston.createLogger({
    level: 'info',
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: Object.keys(winston.config.npm.levels) })],
  });
}

// 400/404/410 are routing outcomes, not incidents: debug only. Upstream
// trouble is a warning; only our own bugs are errors.
const LEVEL_BY_CODE: Record<ProxyErrorCode, 'debug' | 'info' | 'warn' | 'error'> = {
  MISSING_HOST: 'debug',
  // An ambiguous request is worth seeing: it is how smuggling attempts look.
  BAD_REQUEST: 'info',
  ROUTE_NOT_FOUND: 'debug',
  // The route store (a database, an API) hangs: an incident of the platform's.
  ROUTE_LOOKUP_TIMEOUT: 'warn',
  UPSTREAM_GONE: 'debug',
  PAYLOAD_TOO_LARGE: 'info',
  RATE_LIMITED: 'info',
  UPSTREAM_UNAVAILABLE: 'info',
  UPSTREAM_UNREACHABLE: 'warn',
  UPSTREAM_TIMEOUT: 'warn',
  UPSTREAM_PROTOCOL_ERROR: 'warn',
  GUARD_UNAVAILABLE: 'error',
  // A transformResponse function of the app's that fails: a bug to fix, like ours.
  RESPONSE_TRANSFORM_FAILED: 'error',
  PROXY_CONFIGURATION: 'error',
  PATH_REWRITE_FAILED: 'error',
  SHUTTING_DOWN: 'debug',
  INTERNAL_PROXY_ERROR: 'error',
};

export function failureLevel(code: ProxyErrorCode): LogLevel {
  return LEVEL_BY_CODE[code];
}

export interface ExchangeFields {
  requestId: string | undefined;
  /** Once the request was found well-formed; its host is the routing key. */
  target: { host: string } | undefined;
  /** Once chosen; its origin is logged as `upstream`, never shown to clients. */
  upstream: URL | undefined;
}

/** The path a record names: the one the client sent (mount included), without the query string, which may hold tokens. */
export function requestPath(req: IncomingMessage): string {
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '';
  const queryStart = url.indexOf('?');
  return queryStart === -1 ? url : url.slice(0, queryStart);
}

/** The host a record names: the routing key once the request was found well-formed. */
export function requestHost(req: IncomingMessage, exchange: ExchangeFields): string | undefined {
  return exchange.target?.host ?? req.headers.host;
}

/** The fields every record about one request carries. */
export function requestFields(req: IncomingMessage, exchange: ExchangeFields): Record<string, unknown> {
  return {
    method: req.method,
    host: requestHost(req, exchange),
    path: requestPath(req),
    requestId: exchange.requestId,
    ...(exchange.upstream !== undefined && { upstream: upstreamId(exchange.upstream) }),
  };
}

/** A cause as log fields: name, message, code, and the stack when asked. */
export function describeCause(cause: unknown, withStack: boolean): Record<string, unknown> | undefined {
  if (cause === undefined) return undefined;
  // isNativeError, not instanceof: Node's own errors may come from another realm (vm, jest).
  if (!(cause instanceof Error) && !types.isNativeError(cause)) return { message: String(cause) };
  const code = (cause as { code?: unknown }).code;
  return { name: cause.name, message: cause.message, ...(typeof code === 'string' && { code }), ...(withStack && { stack: cause.stack }) };
}

export function logProxyError(logger: Logger, error: ProxyError, req: IncomingMessage, exchange: ExchangeFields, extra?: Record<string, unknown>): void {
  const level = LEVEL_BY_CODE[error.code];
  if (!logger.isLevelEnabled(level)) return;
  // The detail, not `message` (the public status text): operators need the why.
  const message = error.code === 'RATE_LIMITED' ? `RATE_LIMIT ${error.detail}` : error.detail;
  logger.log(level, message, {
    ...requestFields(req, exchange),
    status: error.statusCode,
    code: error.code,
    proxyStatus: error.proxyStatus,
    ...error.logFields,
    ...extra,
    // A refused connection needs its code, not a stack; a bug of ours needs the stack.
    ...((level === 'warn' || level === 'error') && { cause: describeCause(error.cause, level === 'error') }),
  });
}
