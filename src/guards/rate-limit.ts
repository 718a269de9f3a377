import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Request, Response } from 'express';
import { ipKeyGenerator, rateLimit, type EnabledValidations, type Options, type Logger as RateLimitLogger, type Store } from 'express-rate-limit';
import { GuardUnavailableError, ProxyError, RateLimitedError } from '../errors.ts';
import { describeCause, type Logger } from '../logging.ts';
import { clientAddress, trustFor, type TrustFunction } from '../upstream/forwarded.ts';
import { createHeaderRenderer, type DraftVersion, type LimitInfo } from './rate-limit-headers.ts';

type ValueOf<T> = (req: IncomingMessage, res: ServerResponse) => T | Promise<T>;

/**
 * express-rate-limit v8 options, passed on to it, plus `onStoreError`. The
 * proxy writes the 429 itself, in its own `errorFormat`: `handler`, `message`
 * and `statusCode` are refused, and `standardHeaders` / `legacyHeaders` choose
 * the 429's headers only (upstream responses get none).
 */
interface RateLimitSharedOptions {
  /** Window length in ms. Default 60000. */
  windowMs?: number;
  /**
   * Default: the client IP through express-rate-limit's ipKeyGenerator (IPv6
   * /56): Express's `req.ip`, which honours `trust proxy`. A WebSocket upgrade
   * through `upgradeThrough` passes through Express and is keyed the same
   * way; one taken by `proxy.upgrade`, outside Express, by the socket's address
   * (or the `trustProxy` option's rule).
   */
  keyGenerator?: ValueOf<string>;
  /**
   * How much of an IPv6 client address the default key keeps: a prefix length
   * (default 56, so one household or small network shares a count), `false`
   * for the whole address, or a function of the request. Only with the default
   * key: with your own `keyGenerator`, call `ipKeyGenerator(ip, prefix)` there.
   */
  ipv6Subnet?: number | false | ValueOf<number>;
  /** Requests for which this returns true are not counted. */
  skip?: ValueOf<boolean>;
  /** Take back the count of a request whose response succeeded (by `requestWasSuccessful`). Default false. */
  skipSuccessfulRequests?: boolean;
  /**
   * Take back the count of a request whose response failed (by
   * `requestWasSuccessful`), or whose connection closed before the response
   * ended. Default false. A WebSocket upgrade always counts.
   */
  skipFailedRequests?: boolean;
  /** Decides, once the response has finished, whether it succeeded. Default: status below 400. */
  requestWasSuccessful?: ValueOf<boolean>;
  /** Where counts live. Default: in memory, per process. Use rate-limit-redis for many instances. */
  store?: Store;
  /**
   * Seconds to put in Retry-After on the 429, or a function of the request.
   * Advice to the client only: the block still lasts until the window ends.
   * Default: the seconds left in the window.
   */
  retryAfter?: number | ValueOf<number>;
  /**
   * Which IETF RateLimit headers the 429 carries: `'draft-7'` (the default when
   * unset: `RateLimit: limit=N, remaining=N, reset=N` and `RateLimit-Policy`),
   * `'draft-8'` (a named policy: `RateLimit: "<identifier>"; r=N; t=N`),
   * `'draft-6'` or `true` (`RateLimit-Limit`, `-Remaining`, `-Reset`), or
   * `false` for none. Rendered as express-rate-limit renders them.
   */
  standardHeaders?: boolean | DraftVersion;
  /** Also send `X-RateLimit-Limit`, `-Remaining`, `-Reset` on the 429. Default false. */
  legacyHeaders?: boolean;
  /** @deprecated express-rate-limit's older name for `legacyHeaders`; give one of the two. */
  headers?: boolean;
  /**
   * The policy name in the draft-8 headers (`standardHeaders: 'draft-8'`), or
   * a function of the request, called on a 429 only. Default: the limit and
   * the window, such as `100-in-15min`. The other drafts carry no name.
   */
  identifier?: string | ValueOf<string>;
  /** The request property that gets `{ limit, used, remaining, resetTime, key }`. Default `'rateLimit'`. */
  requestPropertyName?: string;
  /**
   * express-rate-limit's own configuration checks: all on (default), all off,
   * or some by name. Its checks of `req.ip` and `trust proxy` never run: they
   * live in its default key, and the proxy always supplies its own.
   */
  validate?: boolean | EnabledValidations;
  /** Where express-rate-limit's own warnings and errors go. Default: the proxy's `logger`. */
  logger?: RateLimitLogger;
  /** express-rate-limit's name for `onStoreError`: true is `'allow'`, false is `'deny'`. Give one of the two. */
  passOnStoreError?: boolean;
  /** When the store fails: `'allow'` (default) lets the request through and logs at error; `'deny'` answers 503. */
  onStoreError?: 'allow' | 'deny';
}

/** Requests allowed per key per window: a whole number, or a function of the request. */
type RateLimitCount = number | ValueOf<number>;

/**
 * express-rate-limit options the proxy accepts. `limit` (or its older name
 * `max`) is required. The `limit` member comes last because TypeScript
 * explains a failed match against the last member of a union: options with
 * neither then read "Property 'limit' is missing", not 'max'.
 */
export type RateLimitOptions = RateLimitSharedOptions &
  (
    | {
        /** @deprecated express-rate-limit's older name for `limit`. */
        max: RateLimitCount;
        limit?: undefined;
      }
    | {
        /** Requests allowed per key per window. Required (or give it as `max`). */
        limit: RateLimitCount;
        max?: undefined;
      }
  );

/** Resolves when the request may go on; rejects with a ProxyError when it may not. */
export type RateLimitGuard = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** An IP (or IPv6 subnet) as is; anything else, such as an API token, only as a hash. */
export function loggableKey(key: string): string {
  if (isIP(key.split('/')[0] ?? '') !== 0) return key;
  return `sha256:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

// Settings of an app whose `trust proxy` is not the rule in use: express-rate-limit's Express checks then find nothing to warn about.
const NO_APP = { get: () => undefined };

/**
 * The request express-rate-limit sees. Its own key generator runs, and with
 * it its checks on `trust proxy` and X-Forwarded-For (of Express's setting
 * when that is the rule), on `request.ip`: inside Express with no `trustProxy` option,
 * Express's own (the rule behind `req.ip`); else the client's address by the
 * `trustProxy` option (or, outside Express, the peer's), through a Proxy, so
 * the request itself is not written to. Either way a client cannot pick its
 * key by sending X-Forwarded-For to a proxy that does not trust it. (A Proxy,
 * not `Object.create(req)`: a request used as a prototype changes shape, and
 * every later access to it, Express's and Node's, gets slower.)
 */
function limiterView(req: Request, trust: TrustFunction | undefined): Request {
  if (trust === undefined && req.ip !== undefined) return req;
  const ip = clientAddress(req, trustFor(req, trust));
  // Here the key is the proxy's rule, not the app's `trust proxy`: checks of the
  // app's setting (false with X-Forwarded-For, or true) would judge a setting not in use.
  const app = NO_APP;
  return new Proxy(req, {
    get: (target, property) => (property === 'ip' ? ip : property === 'app' ? app : Reflect.get(target, property, target)),
  });
}

export function createRateLimitGuard(options: RateLimitOptions, logger: Logger, trust?: TrustFunction): RateLimitGuard {
  // The rest (skip, skipFailedRequests, store, requestPropertyName...) is
  // express-rate-limit's to read as given; options.ts let through only known names.
  const { windowMs = 60_000, limit, max, retryAfter, logger: ownLogger, passOnStoreError, onStoreError, standardHeaders, legacyHeaders, headers: legacyAlias, identifier, ...passedOn } =
    options;
  const propertyName = options.requestPropertyName ?? 'rateLimit';
  const renderHeaders = createHeaderRenderer({ windowMs, standardHeaders, legacyHeaders, headers: legacyAlias, identifier });
  const limiter = rateLimit({
    ...(passedOn as unknown as Partial<Options>),
    windowMs,
    limit: (limit ?? max) as Options['limit'],
    // Off for express-rate-limit, which would set them on every response the
    // upstream sends; the handler puts the chosen ones on the 429 alone.
    standardHeaders: false,
    legacyHeaders: false,
    passOnStoreError: passOnStoreError ?? onStoreError !== 'deny',
    handler: async (req, res, next) => {
      // The error carries the headers itself, so every way of answering it
      // (a response, a raw upgrade socket, next(err)) can send them.
      const info = (req as unknown as Record<string, LimitInfo | undefined>)[propertyName]!;
      const seconds = typeof retryAfter === 'function' ? await retryAfter(req, res) : retryAfter;
      const headers = await renderHeaders(info, seconds, req, res);
      next(new RateLimitedError('rate limit exceeded', { headers, logFields: { key: loggableKey(info.key) } }));
    },
    logger: ownLogger ?? {
      error: (error, message) => logger.error(message ?? 'rate limiter error', { cause: describeCause(error, false) }),
      warn: (error, message) => logger.warn(message ?? 'rate limiter warning', { cause: describeCause(error, false) }),
    },
  });

  return (req, res) =>
    new Promise((resolve, reject) => {
      const view = limiterView(req as Request, trust);
      void limiter(view, res as Response, (err?: unknown) => {
        if (err instanceof ProxyError) return reject(err);
        if (err) return reject(new GuardUnavailableError('rate limit store failed; request denied', { cause: err }));
        resolve();
      });
    });
}
