import type { IncomingMessage } from 'node:http';

/** True when the request says a body follows (a non-zero Content-Length, or Transfer-Encoding). */
export function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}
