import { STATUS_CODES } from 'node:http';

/**
 * RFC 9209 `Proxy-Status` error types this proxy emits. A client (or an SDK)
 * reads them to tell a failure of the proxy from a response of the app.
 */
export type ProxyStatusErrorType =
  | 'http_request_error'
  | 'destination_not_found'
  | 'destination_unavailable'
  | 'http_request_denied'
  | 'connection_refused'
  | 'connection_terminated'
  | 'connection_timeout'
  | 'connection_read_timeout'
  | 'dns_error'
  | 'http_protocol_error'
  | 'http_response_content_coding'
  | 'http_response_timeout'
  | 'tls_protocol_error'
  | 'tls_certificate_error'
  | 'proxy_internal_error'
  | 'proxy_configuration_error'
  | 'proxy_internal_response';

export type ProxyErrorCode =
  | 'MISSING_HOST'
  | 'BAD_REQUEST'
  | 'ROUTE_NOT_FOUND'
  | 'ROUTE_LOOKUP_TIMEOUT'
  | 'PAYLOAD_TOO_LARGE'
  | 'RATE_LIMITED'
  | 'UPSTREAM_UNREACHABLE'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_PROTOCOL_ERROR'
  | 'UPSTREAM_UNAVAILABLE'
  | 'UPSTREAM_GONE'
  | 'GUARD_UNAVAILABLE'
  | 'RESPONSE_TRANSFORM_FAILED'
  | 'PROXY_CONFIGURATION'
  | 'PATH_REWRITE_FAILED'
  | 'SHUTTING_DOWN'
  | 'INTERNAL_PROXY_ERROR';

export interface ProxyErrorInit {
  /** Overrides the class's default RFC 9209 error type (e.g. `dns_error` for a 502). */
  proxyStatus?: ProxyStatusErrorType;
  /** Extra response headers such as `Retry-After`. Never put upstream detail here. */
  headers?: Record<string, string>;
  /** What actually went wrong. Logged, never sent to the client. */
  cause?: unknown;
  /** Extra fields for the log record (a rate-limit key, a declared size). Never sent to the client. */
  logFields?: Record<string, unknown>;
}

/**
 * A failure of the proxy itself, as opposed to a response of the upstream app.
 *
 * `message` is the public status text (`Bad Gateway`), the same as `statusText`,
 * so whatever prints `message` or `stack` (Express's development error page
 * does) shows nothing private. The sentence each constructor takes is `detail`:
 * it may name a host, a limit or a Node error code, and only the logs get it,
 * together with `cause`. What the client sees is derived from `statusCode`
 * alone, plus the fixed `description`.
 */
export abstract class ProxyError extends Error {
  abstract readonly statusCode: number;
  abstract readonly code: ProxyErrorCode;
  /** A fixed, safe sentence for JSON error bodies. */
  abstract readonly description: string;
  /** What went wrong, in words for operators (`upstream request failed: ECONNREFUSED`). Logged, never sent to the client. */
  declare readonly detail: string;
  readonly proxyStatus: ProxyStatusErrorType;
  readonly headers: Readonly<Record<string, string>>;
  readonly logFields: Readonly<Record<string, unknown>>;

  constructor(detail: string, defaultProxyStatus: ProxyStatusErrorType, init: ProxyErrorInit = {}) {
    // A ProxyError is an answer, not a bug: capturing a stack for every 502 or
    // 429 was the largest single cost on the error path. The cause, when there
    // is one, keeps its own stack, and that is the one the logs carry. With no
    // frames, `stack` is `<name>: <message>` alone, read when first asked for.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      // No message here: `message` is the getter below, and the status code it
      // reads is a subclass field, not set yet.
      super(undefined, init.cause === undefined ? undefined : { cause: init.cause });
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    this.name = new.target.name;
    // Not enumerable, like an Error's own message and cause: an app that
    // serializes the error (`res.json(err)`) must not send it.
    Object.defineProperty(this, 'detail', { value: detail, enumerable: false, writable: false, configurable: true });
    this.proxyStatus = init.proxyStatus ?? defaultProxyStatus;
    this.headers = Object.freeze({ ...init.headers });
    this.logFields = Object.freeze({ ...init.logFields });
  }

  /** `status` and `expose`, as the http-errors convention names them, for Express's error handler. */
  get status(): number {
    return this.statusCode;
  }

  /**
   * False: an error handler that honours it shows the status text, which is
   * what `message` holds anyway.
   */
  readonly expose = false;

  /** The standard reason phrase, which is also the whole text body. */
  get statusText(): string {
    return STATUS_CODES[this.statusCode] ?? 'Error';
  }

  /** The public status text, as `statusText`; the internal sentence is `detail`. */
  override get message(): string {
    return this.statusText;
  }

  /** An assignment behaves as on any Error (code that prefixes a message must not throw): it replaces the text. */
  override set message(value: string) {
    Object.defineProperty(this, 'message', { value, writable: true, configurable: true, enumerable: false });
  }
}

export class MissingHostError extends ProxyError {
  readonly statusCode = 400;
  readonly code = 'MISSING_HOST';
  readonly description = 'The request has no Host header.';
  constructor(init?: ProxyErrorInit) {
    super('request has no Host header', 'http_request_error', init);
  }
}

/**
 * A request whose framing or target is ambiguous (two Host lines, a Host that
 * disagrees with an absolute-form target, Transfer-Encoding on HTTP/1.0...).
 * Refused before routing, and the connection is closed: where its body ends
 * cannot be trusted.
 */
export class BadRequestError extends ProxyError {
  readonly statusCode = 400;
  readonly code = 'BAD_REQUEST';
  readonly description = 'The request is malformed or ambiguous.';
  constructor(detail = 'bad request', init: ProxyErrorInit = {}) {
    super(detail, 'http_request_error', { ...init, headers: { connection: 'close', ...init.headers } });
  }
}

export class RouteNotFoundError extends ProxyError {
  readonly statusCode = 404;
  readonly code = 'ROUTE_NOT_FOUND';
  readonly description = 'No upstream is configured for this host.';
  constructor(detail = 'no route for host', init?: ProxyErrorInit) {
    super(detail, 'destination_not_found', init);
  }
}

/**
 * The route lookup (a route function, portHostRoutes' `resolve`) did not
 * settle within `timeouts.route`. 504: the proxy waited on a server it needed
 * (the platform's route store) to answer the request. `proxy_internal_error`,
 * not a timeout type: RFC 9209's timeout types name the next hop's connection
 * or response, and the next hop was never chosen, let alone contacted.
 */
export class RouteLookupTimeoutError extends ProxyError {
  readonly statusCode = 504;
  readonly code = 'ROUTE_LOOKUP_TIMEOUT';
  readonly description = 'The proxy could not find the upstream for this host in time.';
  constructor(detail = 'route lookup timed out', init?: ProxyErrorInit) {
    super(detail, 'proxy_internal_error', init);
  }
}

export class PayloadTooLargeError extends ProxyError {
  readonly statusCode = 413;
  readonly code = 'PAYLOAD_TOO_LARGE';
  readonly description = 'The request body is larger than this proxy accepts.';
  constructor(detail = 'request body over the limit', init?: ProxyErrorInit) {
    super(detail, 'http_request_error', init);
  }
}

export class RateLimitedError extends ProxyError {
  readonly statusCode = 429;
  readonly code = 'RATE_LIMITED';
  readonly description = 'Too many requests; retry after the time in Retry-After.';
  constructor(detail = 'rate limit exceeded', init?: ProxyErrorInit) {
    super(detail, 'http_request_denied', init);
  }
}

export class UpstreamUnreachableError extends ProxyError {
  readonly statusCode = 502;
  readonly code = 'UPSTREAM_UNREACHABLE';
  readonly description = 'The upstream server could not be reached.';
  constructor(detail = 'upstream unreachable', init?: ProxyErrorInit) {
    super(detail, 'connection_refused', init);
  }
}

export class UpstreamTimeoutError extends ProxyError {
  readonly statusCode = 504;
  readonly code = 'UPSTREAM_TIMEOUT';
  readonly description = 'The upstream server did not answer in time.';
  constructor(detail = 'upstream timed out', init?: ProxyErrorInit) {
    super(detail, 'connection_timeout', init);
  }
}

/**
 * The upstream answered, but not with valid HTTP: an invalid status line, a
 * 101 nobody asked for, a connection closed with no response or in the middle
 * of the head. 502 like an unreachable upstream, under a code of its own,
 * because the fix is in the app, not in the network.
 */
export class UpstreamProtocolError extends ProxyError {
  readonly statusCode = 502;
  readonly code = 'UPSTREAM_PROTOCOL_ERROR';
  readonly description = 'The upstream server sent an invalid response.';
  constructor(detail = 'invalid upstream response', init?: ProxyErrorInit) {
    super(detail, 'http_protocol_error', init);
  }
}

/**
 * A `transformResponse` function of the proxy's configuration failed: `when`
 * or `transform` threw, or the stream `transform` returned errored. 502 as
 * the issue asks: the response the upstream sent could not be turned into
 * the one the client was to get. `proxy_internal_error` because the fault is
 * in the proxy's own code (RFC 9209: "unrelated to the origin"), not in the
 * upstream; logged at error with its cause and stack. After the head went
 * out it is an abort, like any failure then.
 */
export class ResponseTransformError extends ProxyError {
  readonly statusCode = 502;
  readonly code = 'RESPONSE_TRANSFORM_FAILED';
  readonly description = 'The proxy could not rewrite the upstream response.';
  constructor(detail = 'response transform failed', init?: ProxyErrorInit) {
    super(detail, 'proxy_internal_error', init);
  }
}

/** For a resolver: the upstream exists but cannot serve now (e.g. a stopped sandbox). */
export class UpstreamUnavailableError extends ProxyError {
  readonly statusCode = 503;
  readonly code = 'UPSTREAM_UNAVAILABLE';
  readonly description = 'The upstream is temporarily unavailable.';
  constructor(detail = 'upstream unavailable', init: ProxyErrorInit & { retryAfterSeconds?: number } = {}) {
    const { retryAfterSeconds, ...rest } = init;
    const headers =
      retryAfterSeconds === undefined ? rest.headers : { ...rest.headers, 'retry-after': String(Math.ceil(retryAfterSeconds)) };
    super(detail, 'destination_unavailable', { ...rest, ...(headers && { headers }) });
  }
}

/** For a resolver: the upstream existed and is gone for good (e.g. a deleted sandbox). */
export class UpstreamGoneError extends ProxyError {
  readonly statusCode = 410;
  readonly code = 'UPSTREAM_GONE';
  readonly description = 'The upstream for this host no longer exists.';
  constructor(detail = 'upstream gone', init?: ProxyErrorInit) {
    super(detail, 'destination_not_found', init);
  }
}

/**
 * A guard could not decide (e.g. the rate-limit store is down and the limiter
 * is set to fail closed). 503, because it is temporary and retrying is right.
 */
export class GuardUnavailableError extends ProxyError {
  readonly statusCode = 503;
  readonly code = 'GUARD_UNAVAILABLE';
  readonly description = 'The proxy cannot admit requests right now; retry later.';
  constructor(detail = 'guard unavailable', init?: ProxyErrorInit) {
    super(detail, 'proxy_internal_error', init);
  }
}

/**
 * The proxy is set up so that it cannot forward this request faithfully, e.g.
 * a body parser before it already read the body. 500, because no retry helps.
 */
export class ProxyConfigurationError extends ProxyError {
  readonly statusCode = 500;
  readonly code = 'PROXY_CONFIGURATION';
  readonly description = 'The proxy is misconfigured for this request.';
  constructor(detail = 'proxy misconfigured', init?: ProxyErrorInit) {
    super(detail, 'proxy_configuration_error', init);
  }
}

/**
 * A route's `pathRewrite` threw, or gave something that is not an
 * origin-form path (it must start with `/`). 500: the route is set up wrong,
 * and nothing went upstream.
 */
export class PathRewriteError extends ProxyError {
  readonly statusCode = 500;
  readonly code = 'PATH_REWRITE_FAILED';
  readonly description = 'The proxy could not rewrite the request path.';
  constructor(detail = 'pathRewrite failed', init?: ProxyErrorInit) {
    super(detail, 'proxy_configuration_error', init);
  }
}

/** The proxy is shutting down (`proxy.close()`): retry elsewhere or in a moment. */
export class ShuttingDownError extends ProxyError {
  readonly statusCode = 503;
  readonly code = 'SHUTTING_DOWN';
  readonly description = 'The proxy is shutting down; retry shortly.';
  constructor(detail = 'proxy shutting down', init: ProxyErrorInit = {}) {
    super(detail, 'proxy_internal_response', { ...init, headers: { connection: 'close', 'retry-after': '1', ...init.headers } });
  }
}

export class InternalProxyError extends ProxyError {
  readonly statusCode = 500;
  readonly code = 'INTERNAL_PROXY_ERROR';
  readonly description = 'The proxy failed unexpectedly.';
  constructor(detail = 'internal proxy error', init?: ProxyErrorInit) {
    super(detail, 'proxy_internal_error', init);
  }
}

export function isProxyError(value: unknown): value is ProxyError {
  return value instanceof ProxyError;
}
