import type { IncomingMessage, ServerResponse } from 'node:http';
import { markLastRequest } from './connection.ts';

/**
 * Up to this many declared bytes, a body nobody will read is read and
 * discarded, so the connection can carry the client's next request (nginx
 * drains small discarded bodies the same way). Past it, or with no declared
 * length, the connection is closed instead.
 */
export const DRAIN_LIMIT = 64 * 1024;

/**
 * The answer is settled (the proxy refused, or the upstream answered early)
 * while the client may still be sending its body. The next request on the
 * connection can only start where this body ends, so leaving it unread stalls
 * that request: a small declared body is drained; anything else gets
 * `Connection: close`, or, when the head is already out, the connection is cut
 * once the response is done, if the body still has not ended by then.
 */
export function settleUnreadBody(req: IncomingMessage, res: ServerResponse): void {
  req.unpipe();
  if (!req.complete && !(Number(req.headers['content-length']) <= DRAIN_LIMIT)) {
    markLastRequest(req);
    if (!res.headersSent) res.setHeader('connection', 'close');
    else
      res.once('finish', () => {
        if (!req.complete) req.socket.destroy();
      });
  }
  req.resume();
}
