import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { ResolvedRoute } from '../routes/target.ts';
import { socketPathOf } from './address.ts';
import type { Balancer } from './balancer.ts';

// Failures of the connect itself: nothing of the request was sent. ENOENT:
// a unix socket file that is not there (yet).
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'EADDRNOTAVAIL', 'ETIMEDOUT']);

export function isConnectFailure(err: unknown): boolean {
  if (err instanceof UpstreamTimeoutError) return err.proxyStatus === 'connection_timeout';
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CONNECT_FAILURES.has(code);
}

/** The route's own startup grace, else the proxy's. */
export function startupGraceOf(route: ResolvedRoute, proxyWide: number): number {
  return route.startupGrace ?? proxyWide;
}

/** Whether a failed connect may be tried again: a grace to wait out, or another upstream to try. */
export function mayRetryConnect(route: ResolvedRoute, proxyWide: number): boolean {
  return startupGraceOf(route, proxyWide) > 0 || route.targets.length > 1;
}

/** Refused, or a socket file not created yet: what an upstream that is still booting answers. */
function isRefused(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOENT';
}

/** What to do after a connect failure: try `upstream` after `delayMs`, or give up with `error`. */
export type ConnectRetry = { upstream: URL; delayMs: number } | { error: unknown };

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 1_000;

/**
 * A connect failure sent nothing upstream, so any method may go again:
 * once to another upstream of the route (the failed one counts against its
 * health), or, while a startup grace lasts, to the same one after a backoff,
 * for an upstream that refuses because it is still booting.
 */
export function planConnectRetry(err: unknown, req: IncomingMessage, exchange: Exchange, balancer: Balancer, grace: number): ConnectRetry {
  const route = exchange.route!;
  const failed = exchange.upstream!;
  balancer.failed(route, failed);
  if (route.targets.length > 1 && !exchange.triedAnother) {
    exchange.triedAnother = true;
    try {
      return { upstream: balancer.pick(route, req, exchange, failed), delayMs: 0 };
    } catch {
      // Every other upstream is out too: answered below.
    }
  }
  // Every upstream out: that, with its Retry-After, is the answer, unless a grace waits.
  const error = balancer.allOut(route) ?? err;
  if (grace <= 0 || !isRefused(err)) return { error };
  const left = grace - (performance.now() - exchange.startedAt);
  // The last wait is cut to what is left of the grace, so the last try comes at its end.
  if (left <= 0) return { error: graceExhausted(err, grace) };
  const backoff = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** exchange.connectAttempts);
  exchange.connectAttempts++;
  return { upstream: failed, delayMs: Math.min(backoff, Math.ceil(left)) };
}

/** The 502 once a startup grace has run out: as without one, plus a Retry-After. */
export function graceExhausted(err: unknown, grace: number): UpstreamUnreachableError {
  const missing = (err as { code?: unknown } | null)?.code === 'ENOENT';
  return new UpstreamUnreachableError(missing ? 'upstream socket file still missing after the startup grace' : 'upstream still refusing connections after the startup grace', {
    proxyStatus: missing ? 'destination_not_found' : 'connection_refused',
    cause: err,
    headers: { 'retry-after': String(Math.max(1, Math.ceil(grace / 1000))) },
  });
}

function connectAddress(upstream: URL): net.NetConnectOpts {
  const path = socketPathOf(upstream);
  if (path !== undefined) return { path };
  const host = upstream.hostname.startsWith('[') ? upstream.hostname.slice(1, -1) : upstream.hostname;
  return { host, port: Number(upstream.port) || (upstream.protocol === 'https:' ? 443 : 80) };
}

/**
 * One connect to the upstream, closed at once: is anything listening? A plain
 * TCP (or unix socket) connect: TLS settings play no part in whether it is up.
 */
function probe(upstream: URL, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(connectAddress(upstream));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamTimeoutError(`no connection within ${timeoutMs} ms`, { proxyStatus: 'connection_timeout' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * For a WebSocket upgrade, whose handshake httpxy cannot send twice (it ends
 * the client's socket on a connect failure): with a startup grace or several
 * upstreams, find one that accepts connections first, by the same rules as
 * HTTP. Throws the error to answer with when there is none.
 */
export async function awaitConnectableUpstream(req: IncomingMessage, exchange: Exchange, balancer: Balancer, grace: number, connectTimeoutMs: number): Promise<void> {
  for (;;) {
    try {
      await probe(exchange.upstream!, connectTimeoutMs);
      balancer.succeeded(exchange.upstream!);
      return;
    } catch (err) {
      const retry = planConnectRetry(err, req, exchange, balancer, grace);
      if ('error' in retry) throw retry.error;
      exchange.upstream = retry.upstream;
      if (retry.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, retry.delayMs));
    }
  }
}
