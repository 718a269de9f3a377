import type { ClientRequest } from 'node:http';
import { UpstreamTimeoutError } from '../errors.ts';

export interface ExchangeTimeouts {
  connect: number;
  response: number;
  idle: number;
}

/**
 * Runs the clocks of one upstream request: connect, then response headers,
 * then idle while the response streams.
 *
 * httpxy's own `proxyTimeout` destroys the request without a reason, which
 * surfaces as ECONNRESET and would be reported as a 502. Destroying with a typed
 * error instead makes that error the one the `error` event carries.
 *
 * One timer at a time, and plain `on` listeners (every event here fires once
 * per request): this runs for every request, so it allocates little.
 */
export function armTimeouts(proxyReq: ClientRequest, proxyWide: ExchangeTimeouts, route: Partial<ExchangeTimeouts> | undefined): void {
  // A route's own clocks, where it sets them (read once: no merged object per request).
  const connectMs = route?.connect ?? proxyWide.connect;
  const responseMs = route?.response ?? proxyWide.response;
  const idleMs = route?.idle ?? proxyWide.idle;
  let timer: NodeJS.Timeout | undefined;
  // The response clock starts once the connection is up and the whole request
  // has been sent: a slow upload is the client's time, not the upstream's.
  // An upgrade's request has no socket yet: its handshake gets the response clock only.
  const socket = proxyReq.socket;
  let connected = !socket?.connecting;
  let sent = false;
  let settled = false;

  const expire = () => {
    timer = undefined;
    proxyReq.destroy(
      connected
        ? new UpstreamTimeoutError(`no response headers within ${responseMs} ms`, { proxyStatus: 'http_response_timeout' })
        : new UpstreamTimeoutError(`no connection within ${connectMs} ms`, { proxyStatus: 'connection_timeout' }),
    );
  };
  const restart = (ms: number) => {
    if (timer !== undefined) clearTimeout(timer);
    timer = settled ? undefined : setTimeout(expire, ms);
  };
  const startResponseClock = () => {
    if (connected && sent && !settled) restart(responseMs);
  };
  const settle = () => {
    if (settled) return;
    settled = true;
    restart(0);
  };

  if (!connected) {
    timer = setTimeout(expire, connectMs);
    // once: the socket outlives this request in the pool.
    socket!.once('connect', () => {
      connected = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      startResponseClock();
    });
  }
  const finished = () => {
    sent = true;
    startResponseClock();
  };
  const responded = () => {
    settle();
    // Idle: no byte either way on the upstream socket while the body streams.
    // Node's socket timeout is exactly that, and it is reset on every read and write.
    proxyReq.setTimeout(idleMs, () =>
      proxyReq.destroy(new UpstreamTimeoutError(`no data for ${idleMs} ms while streaming`, { proxyStatus: 'connection_read_timeout' })),
    );
  };
  // A WebSocket's frames have no clock of ours: they may rightly be quiet for
  // hours. Its request stays reachable as long as the WebSocket is open
  // (httpxy's listeners on both sockets hold it), and with it every listener
  // here and the closures they share: they go, as there is nothing left to time.
  const upgraded = () => {
    settle();
    proxyReq.removeListener('finish', finished);
    proxyReq.removeListener('response', responded);
    proxyReq.removeListener('upgrade', upgraded);
    proxyReq.removeListener('close', settle);
  };
  proxyReq.on('finish', finished);
  proxyReq.on('response', responded);
  proxyReq.on('upgrade', upgraded);
  proxyReq.on('close', settle);
}
