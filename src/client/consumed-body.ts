import type { IncomingMessage } from 'node:http';
import { ProxyConfigurationError } from '../errors.ts';
import { declaresBody } from '../request/body.ts';

const FIX = "mount the proxy before body parsers, or set consumedBody: 'reserialize'";

/**
 * True when something before the proxy (a body parser) has already read the
 * request's body stream: forwarding the stream now would send an empty or
 * partial body, or wait for bytes that will never come.
 */
export function bodyWasConsumed(req: IncomingMessage): boolean {
  return declaresBody(req) && (req.readableDidRead || req.readableEnded);
}

// `a[b][0]=c`: the nesting that urlencoded parsers with `extended: true` read back.
function encodeForm(value: unknown, prefix: string, pairs: string[]): void {
  if (value === null || value === undefined) return;
  if (typeof value === 'object') {
    for (const [key, inner] of Object.entries(value as Record<string, unknown>)) encodeForm(inner, prefix ? `${prefix}[${key}]` : key, pairs);
    return;
  }
  pairs.push(`${encodeURIComponent(prefix)}=${encodeURIComponent(String(value))}`);
}

/**
 * `req.body` encoded again as the request's Content-Type says, for
 * `consumedBody: 'reserialize'`. A body that cannot be (an object under a type
 * that is neither JSON nor a form) is a configuration error, never a guess.
 */
export function reserializeBody(req: IncomingMessage): Buffer {
  const body = (req as { body?: unknown }).body;
  const type = String(req.headers['content-type'] ?? '').toLowerCase();
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (/^application\/(?:[\w.+-]+\+)?json\b/.test(type)) return Buffer.from(JSON.stringify(body), 'utf8');
  if (type.startsWith('application/x-www-form-urlencoded') && body !== null && typeof body === 'object') {
    const pairs: string[] = [];
    encodeForm(body, '', pairs);
    return Buffer.from(pairs.join('&'), 'utf8');
  }
  throw new ProxyConfigurationError(`request body was read by an earlier middleware and cannot be re-encoded as ${type || 'no content type'}`, {
    logFields: { fix: FIX },
  });
}

/** The default: refuse at once, and say in the log what to change. */
export function consumedBodyError(): ProxyConfigurationError {
  return new ProxyConfigurationError('request body was already read by an earlier middleware (a body parser?)', { logFields: { fix: FIX } });
}
