import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** The IETF RateLimit header drafts express-rate-limit v8 can write. */
export const DRAFT_VERSIONS = ['draft-6', 'draft-7', 'draft-8'] as const;
export type DraftVersion = (typeof DRAFT_VERSIONS)[number];

type ValueOf<T> = (req: IncomingMessage, res: ServerResponse) => T | Promise<T>;

export interface HeaderOptions {
  windowMs: number;
  /** Unset: draft-7, what the proxy always sent; `true` is draft-6, as in express-rate-limit. */
  standardHeaders?: boolean | DraftVersion | undefined;
  legacyHeaders?: boolean | undefined;
  /** express-rate-limit's older name for `legacyHeaders`. */
  headers?: boolean | undefined;
  identifier?: string | ValueOf<string> | undefined;
}

export interface LimitInfo {
  limit: number;
  remaining: number;
  resetTime?: Date | undefined;
  key: string;
}

/** Renders a 429's headers from the counts; `retryAfter` is the `retryAfter` option's value, if any. */
export type HeaderRenderer = (info: LimitInfo, retryAfter: number | undefined, req: IncomingMessage, res: ServerResponse) => Promise<Record<string, string>>;

/**
 * Chooses the 429's headers once, at construction. Each header is rendered as
 * express-rate-limit v8 renders it (its `source/headers.ts`, which it does not
 * export), value for value, so a client sees the same fields whether the app's
 * own limiter or the proxy's answered. express-rate-limit would set them on
 * every response; the proxy sets them on its 429 only, and Retry-After always.
 */
export function createHeaderRenderer(options: HeaderOptions): HeaderRenderer {
  const { windowMs, standardHeaders = 'draft-7', identifier } = options;
  const standard = standardHeaders === true ? 'draft-6' : standardHeaders;
  const legacy = options.legacyHeaders ?? options.headers ?? false;
  const windowSeconds = Math.ceil(windowMs / 1000);
  const policyName = async (info: LimitInfo, req: IncomingMessage, res: ServerResponse): Promise<string> =>
    identifier === undefined ? defaultPolicyName(info.limit, windowMs) : typeof identifier === 'function' ? await identifier(req, res) : identifier;

  return async (info, retryAfter, req, res) => {
    const reset = resetSeconds(windowMs, info.resetTime);
    return {
      ...(legacy && legacyHeaders(info)),
      ...(standard === 'draft-6' && draft6Headers(info, windowSeconds, reset)),
      ...(standard === 'draft-7' && draft7Headers(info, windowSeconds, reset)),
      ...(standard === 'draft-8' && draft8Headers(info, windowSeconds, reset, await policyName(info, req, res))),
      'retry-after': String(retryAfter ?? reset),
    };
  };
}

function resetSeconds(windowMs: number, resetTime: Date | undefined): number {
  return resetTime ? Math.max(0, Math.ceil((resetTime.getTime() - Date.now()) / 1000)) : Math.ceil(windowMs / 1000);
}

function legacyHeaders(info: LimitInfo): Record<string, string> {
  return {
    'x-ratelimit-limit': String(info.limit),
    'x-ratelimit-remaining': String(info.remaining),
    // The reset is a moment, not a duration: Date lets the client read it against the server's clock.
    ...(info.resetTime instanceof Date && { date: new Date().toUTCString(), 'x-ratelimit-reset': String(Math.ceil(info.resetTime.getTime() / 1000)) }),
  };
}

function draft6Headers(info: LimitInfo, windowSeconds: number, reset: number): Record<string, string> {
  return {
    'ratelimit-policy': `${info.limit};w=${windowSeconds}`,
    'ratelimit-limit': String(info.limit),
    'ratelimit-remaining': String(info.remaining),
    'ratelimit-reset': String(reset),
  };
}

function draft7Headers(info: LimitInfo, windowSeconds: number, reset: number): Record<string, string> {
  return {
    'ratelimit-policy': `${info.limit};w=${windowSeconds}`,
    ratelimit: `limit=${info.limit}, remaining=${info.remaining}, reset=${reset}`,
  };
}

function draft8Headers(info: LimitInfo, windowSeconds: number, reset: number, name: string): Record<string, string> {
  return {
    ratelimit: `"${name}"; r=${info.remaining}; t=${reset}`,
    'ratelimit-policy': `"${name}"; q=${info.limit}; w=${windowSeconds}; pk=:${partitionKey(info.key)}:`,
  };
}

/** Which client the policy counted, without naming it: express-rate-limit's 12 hex digits of a SHA-256, in base64. */
function partitionKey(key: string): string {
  return Buffer.from(createHash('sha256').update(key).digest('hex').slice(0, 12)).toString('base64');
}

/** express-rate-limit's default `identifier`: the limit and the window, such as `100-in-15min`. */
function defaultPolicyName(limit: number, windowMs: number): string {
  // Each divided from windowMs as express-rate-limit divides, so a fractional
  // window (`1.5min`) gives the very digits its name has.
  const seconds = windowMs / 1000;
  const minutes = windowMs / (1000 * 60);
  const hours = windowMs / (1000 * 60 * 60);
  const days = windowMs / (1000 * 60 * 60 * 24);
  if (seconds < 60) return `${limit}-in-${seconds}sec`;
  if (minutes < 60) return `${limit}-in-${minutes}min`;
  if (hours < 24) return `${limit}-in-${hours}hr${hours > 1 ? 's' : ''}`;
  return `${limit}-in-${days}day${days > 1 ? 's' : ''}`;
}
