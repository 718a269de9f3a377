import type { IncomingHttpHeaders } from 'node:http';

// RFC 9110 7.6.1: these describe one connection, the upstream's, not ours.
// Transfer-Encoding is left to Node, which frames our side itself.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade'];

/** Removes hop-by-hop fields (and any the Connection header names) from an upstream response. */
export function stripHopByHopHeaders(headers: IncomingHttpHeaders): void {
  const connection = headers.connection;
  if (typeof connection === 'string') {
    for (const token of connection.split(',')) {
      const name = token.trim().toLowerCase();
      if (name && name !== 'transfer-encoding') delete headers[name];
    }
  }
  for (const name of HOP_BY_HOP) delete headers[name];
}
