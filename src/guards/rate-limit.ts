import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Request, Response } from 'express';
import { ipKeyGenerator, rateLimit, type Store } from 'express-rate-limit';
import { GuardUnavailableError, ProxyError, RateLimitedError } from '../errors.ts';
import { describeCause, type Logger } from '../logging.ts';
import { clientAddress, trustFor, type TrustFunction } from '../upstream/forwarded.ts';

type ValueOf<T> = (req: IncomingMessage, res: ServerResponse) => T | Promise<T>;

/** The subset of express-rate-limit v8 options the proxy passes on, plus what to do when the store fails. */
export interface RateLimitOptions {
  /** Window length in ms. Default 60000. */
  windowMs?: number;
  /** Requests allowed per key per window. Required. */
  limit: number | ValueOf<number>;
  /**
   * Default: the client IP through express-rate-limit's ipKeyGenerator (IPv6
   * /56): Express's `req.ip`, which honours `trust proxy`; for a WebSocket
   * upgrade, which never passes through Express, the socket's address.
   */
  keyGenerator?: ValueOf<string>;
  /** Requests for which this returns true are not counted. */
  skip?: ValueOf<boolean>;
  /** Where counts live. Default: in memory, per process. Use rate-limit-redis for many instances. */
  store?: Store;
  /** When the store fails: `'allow'` (default) lets the request through and logs at error; `'deny'` answers 503. */
  onStoreError?: 'allow' | 'deny';
}

/** Resolves when the request may go on; rejects with a ProxyError when it may not. */
export type RateLimitGuard = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** An IP (or IPv6 subnet) as is; anything else, such as an API token, only as a hash. */
export function loggableKey(key: string): string {
  if (isIP(key.split('/')[0] ?? '') !== 0) return key;
  return `sha256:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/**
 * The client's address by the same trust rule as the forwarded headers (the
 * `trustProxy` option, else Express's `trust proxy`): a client cannot pick its
 * own key by sending X-Forwarded-For to a proxy that does not trust it.
 */
function clientAddressKey(trust: TrustFunction | undefined): (req: Request) => string {
  return (req) => ipKeyGenerator(trust === undefined && req.ip !== undefined ? req.ip : clientAddress(req, trustFor(req, trust)), 56);
}

const RATE_LIMIT_HEADERS = ['retry-after', 'ratelimit', 'ratelimit-policy'];

export function createRateLimitGuard(options: RateLimitOptions, logger: Logger, trust?: TrustFunction): RateLimitGuard {
  const limiter = rateLimit({
    windowMs: options.windowMs ?? 60_000,
    limit: options.limit as number,
    keyGenerator: (options.keyGenerator as unknown as (req: Request, res: Response) => string) ?? clientAddressKey(trust),
    ...(options.skip && { skip: options.skip as unknown as (req: Request, res: Response) => boolean }),
    ...(options.store && { store: options.store }),
    // draft-7 sets its headers with setHeader alone (draft-8 needs Express's
    // res.append), so the same limiter serves upgrades, which have no Express res.
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    passOnStoreError: options.onStoreError !== 'deny',
    handler: (req, res, next) => {
      // The error carries the headers itself, so every way of answering it
      // (a response, a raw upgrade socket, next(err)) can send them.
      const headers: Record<string, string> = {};
      for (const name of RATE_LIMIT_HEADERS) {
        const value = res.getHeader(name);
        if (value !== undefined) headers[name] = String(value);
      }
      const key = (req as Request & { rateLimit?: { key?: string } }).rateLimit?.key;
      next(new RateLimitedError('rate limit exceeded', { headers, ...(key !== undefined && { logFields: { key: loggableKey(key) } }) }));
    },
    logger: {
      error: (error, message) => logger.error(message ?? 'rate limiter error', { cause: describeCause(error, false) }),
      warn: (error, message) => logger.warn(message ?? 'rate limiter warning', { cause: describeCause(error, false) }),
    },
  });

  return (req, res) =>
    new Promise((resolve, reject) => {
      void limiter(req as Request, res as Response, (err?: unknown) => {
        if (err instanceof ProxyError) return reject(err);
        if (err) return reject(new GuardUnavailableError('rate limit store failed; request denied', { cause: err }));
        // The counts belong on our 429s only: an upstream response stays untouched.
        for (const name of RATE_LIMIT_HEADERS) res.removeHeader(name);
        resolve();
      });
    });
}
