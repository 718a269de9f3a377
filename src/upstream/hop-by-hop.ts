import type { IncomingHttpHeaders } from 'node:http';

// RFC 9110 7.6.1: these describe one connection, not the message, so a proxy
// must not forward them. Transfer-Encoding is left to Node, which frames each
// side itself. Proxy-Authorization is a credential for a proxy, not for the app.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'upgrade'];

function removeHopByHop(headers: IncomingHttpHeaders, keep: ReadonlySet<string>): void {
  const connection = headers.connection;
  if (typeof connection === 'string') {
    for (const token of connection.split(',')) {
      const name = token.trim().toLowerCase();
      if (name && name !== 'transfer-encoding' && !keep.has(name)) delete headers[name];
    }
  }
  // Deleting only what is there: most requests carry one of these at most.
  for (const name of HOP_BY_HOP) if (headers[name] !== undefined && !keep.has(name)) delete headers[name];
}

const NOTHING = new Set<string>();
const UPGRADE = new Set(['connection', 'upgrade']);

/**
 * Removes the client's hop-by-hop fields before the request goes upstream. A
 * client's `Connection: close` would otherwise close our pooled upstream
 * connection after every request. An upgrade keeps `Connection`/`Upgrade`,
 * which are its whole point; `TE: trailers` is end-to-end in practice (gRPC).
 */
export function stripHopByHopRequestHeaders(headers: IncomingHttpHeaders, isUpgrade: boolean): void {
  const te = headers.te;
  removeHopByHop(headers, isUpgrade ? UPGRADE : NOTHING);
  if (typeof te === 'string' && te.trim().toLowerCase() === 'trailers') headers.te = 'trailers';
}

/** Removes the upstream's hop-by-hop fields (and any its Connection header names) from its response. */
export function stripHopByHopHeaders(headers: IncomingHttpHeaders): void {
  const keepAliveHint = headers['keep-alive'];
  removeHopByHop(headers, NOTHING);
  // Node's agent reads `Keep-Alive: timeout=N` from these same headers when it
  // pools the socket, to retire it before the upstream closes it (seed 000's
  // stale socket). Kept, but not enumerable: httpxy copies headers by
  // Object.keys, so the client never sees it.
  if (keepAliveHint !== undefined) Object.defineProperty(headers, 'keep-alive', { value: keepAliveHint, enumerable: false, configurable: true });
}
