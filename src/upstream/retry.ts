import type { ClientRequest, IncomingMessage } from 'node:http';
import { declaresBody } from '../request/body.ts';

// RFC 9110 9.2.2: methods a client may repeat without changing the outcome.
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);

/**
 * A request may be replayed once, on a fresh connection, when it failed on a
 * pooled socket the upstream had already closed (the keep-alive race): the
 * error is a reset or broken pipe, it came before any byte of the response,
 * and replaying cannot do anything twice (an idempotent method or an
 * Idempotency-Key, and no body that has already been consumed).
 */
export function isSafeToRetry(err: unknown, proxyReq: ClientRequest | undefined, req: IncomingMessage): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !STALE_SOCKET_CODES.has(code)) return false;
  if (!proxyReq?.reusedSocket) return false;
  if (declaresBody(req)) return false;
  return IDEMPOTENT_METHODS.has(req.method ?? '') || req.headers['idempotency-key'] !== undefined;
}
