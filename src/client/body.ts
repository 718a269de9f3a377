import type { IncomingMessage, ServerResponse } from 'node:http';
import { markLastRequest } from './connection.ts';
import type { LingeringClose } from './lingering-close.ts';

/**
 * Up to this many declared bytes, a body nobody will read is read and
 * discarded, so the connection can carry the client's next request (nginx
 * drains small discarded bodies the same way). Past it, or with no declared
 * length, the connection is closed instead.
 */
export const DRAIN_LIMIT = 64 * 1024;

/**
 * The answer is settled (the proxy refused, or the upstream answered early)
 * while the client may still be sending its body. `arrival` is the request's
 * place on its connection.
 */
export type UnreadBodySettler = (req: IncomingMessage, res: ServerResponse, arrival: number) => void;

/**
 * The next request on the connection can only start where this body ends, so
 * leaving it unread stalls that request: a small declared body is drained;
 * anything else gets `Connection: close`, or, when the head is already out,
 * the connection is closed once the response is done, if the body still has
 * not ended by then. Either close lingers, so that a client still uploading
 * reads the answer instead of a reset.
 */
export function createUnreadBodySettler(lingeringClose: LingeringClose): UnreadBodySettler {
  return function settleUnreadBody(req, res, arrival) {
    req.unpipe();
    if (!req.complete && !(Number(req.headers['content-length']) <= DRAIN_LIMIT)) {
      markLastRequest(req, arrival);
      // Node closes after this response when it says `Connection: close`
      // (ours, or the client's own request asked for it)...
      lingeringClose.whenNodeCloses(req);
      if (!res.headersSent) res.setHeader('connection', 'close');
      // ...and when the head went out keeping the connection, the proxy closes it.
      else
        res.once('finish', () => {
          if (!req.complete) lingeringClose.now(req);
        });
    }
    req.resume();
  };
}
