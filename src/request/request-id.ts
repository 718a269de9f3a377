import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

// Short and header-safe: anything else from a client is replaced, not trusted.
const SANE_REQUEST_ID = /^[A-Za-z0-9._~:+/=@-]{1,128}$/;

/**
 * The client's request id when it is sane, else a new one. `replaced` says
 * whether the upstream must be sent the new one: the request itself is never
 * written to.
 */
export function readRequestId(req: IncomingMessage, header: string): { id: string; replaced: boolean } {
  const given = req.headers[header];
  if (typeof given === 'string' && SANE_REQUEST_ID.test(given)) return { id: given, replaced: false };
  return { id: randomUUID(), replaced: true };
}
