import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

// Short and header-safe: anything else from a client is replaced, not trusted.
const SANE_REQUEST_ID = /^[A-Za-z0-9._~:+/=@-]{1,128}$/;

/** The client's request id when it is sane, else a new one; written back into the request. */
export function assignRequestId(req: IncomingMessage, header: string): string {
  const given = req.headers[header];
  if (typeof given === 'string' && SANE_REQUEST_ID.test(given)) return given;
  const id = randomUUID();
  req.headers[header] = id;
  return id;
}
