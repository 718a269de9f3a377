import type { ClientRequest, IncomingMessage } from 'node:http';
import { forwardedFields, type ForwardedSettings } from './forwarded.ts';
import { connectionTokens, HOP_BY_HOP } from './hop-by-hop.ts';

/**
 * How the upstream's request headers differ from the client's. The client's
 * `req.headers` are never edited: Express, later middleware and the logs keep
 * seeing what the client sent.
 */
export interface UpstreamHeaderPlan {
  /** Set on the outgoing request as it is built (httpxy's per-request `headers`). */
  set: Record<string, string>;
  /** Removed from the outgoing request after it is built, before a byte of it is sent. */
  remove: string[];
  /** Whether the client's request carried a Content-Length (see undoEngineEdits). */
  clientSentLength: boolean;
}

// What a client's `Connection: <name>` may never remove: the framing, the
// routing, and the fields the proxy itself speaks for. Otherwise
// `Connection: content-length` sends a body upstream unframed, and the
// upstream reads it as requests of the client's choosing.
const NEVER_LISTED_AWAY = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'via',
  'proxy-status',
]);

export interface HeaderPlanSettings {
  isUpgrade: boolean;
  /** The request id header (the proxy speaks for it), or false. */
  requestIdHeader: string | false;
  /** A new request id the upstream must get instead of the client's. */
  newRequestId: string | undefined;
  forwarded: ForwardedSettings;
}

/**
 * A client's hop-by-hop fields (and those its Connection header names) stay
 * on its side: its `Connection: close` would otherwise close our pooled
 * upstream connection after every request. An upgrade keeps
 * `Connection: upgrade` and its `Upgrade`, which are its whole point.
 * `TE: trailers` is end-to-end in practice (gRPC). `Expect` is answered by
 * Node itself, so the upstream never sees it.
 */
export function planUpstreamHeaders(req: IncomingMessage, settings: HeaderPlanSettings): UpstreamHeaderPlan {
  const headers = req.headers;
  const set: Record<string, string> = { connection: settings.isUpgrade ? 'upgrade' : 'keep-alive' };
  const remove: string[] = [];
  const drop = (name: string) => {
    if (headers[name] !== undefined && !remove.includes(name)) remove.push(name);
  };

  for (const name of HOP_BY_HOP) {
    if (name === 'connection' || name === 'transfer-encoding' || (name === 'upgrade' && settings.isUpgrade)) continue;
    if (name === 'te' && typeof headers.te === 'string' && headers.te.trim().toLowerCase() === 'trailers') {
      set.te = 'trailers';
      continue;
    }
    drop(name);
  }
  for (const name of connectionTokens(headers.connection)) {
    if (HOP_BY_HOP.has(name) || NEVER_LISTED_AWAY.has(name) || name === settings.requestIdHeader) continue;
    drop(name);
  }
  if (headers.expect !== undefined) {
    // httpxy skips its `proxyReq` event for a request that carries Expect, and
    // that event is where the rest of this plan is applied; blank it first.
    set.expect = '';
    remove.push('expect');
  }
  if (settings.requestIdHeader !== false && settings.newRequestId !== undefined) set[settings.requestIdHeader] = settings.newRequestId;
  const forwarded = forwardedFields(req, settings.forwarded);
  Object.assign(set, forwarded.set);
  for (const name of forwarded.remove) drop(name);
  return { set, remove, clientSentLength: headers['content-length'] !== undefined };
}

export function applyRemovals(proxyReq: ClientRequest, plan: UpstreamHeaderPlan): void {
  for (const name of plan.remove) proxyReq.removeHeader(name);
}

/**
 * httpxy writes `content-length: 0` into the client's own headers for a
 * bodyless DELETE or OPTIONS (some servers wait for a body otherwise). The
 * upstream keeps it; the client's request gets its own headers back.
 */
export function undoEngineEdits(req: IncomingMessage, plan: UpstreamHeaderPlan): void {
  if (!plan.clientSentLength && req.headers['content-length'] !== undefined) delete req.headers['content-length'];
}
