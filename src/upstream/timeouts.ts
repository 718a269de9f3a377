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
 */
export function armTimeouts(proxyReq: ClientRequest, timeouts: ExchangeTimeouts): void {
  let timer: NodeJS.Timeout | undefined;
  const clear = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };

  const onConnectTimeout = () => {
    timer = undefined;
    proxyReq.destroy(new UpstreamTimeoutError(`no connection within ${timeouts.connect} ms`, { proxyStatus: 'connection_timeout' }));
  };
  const onResponseTimeout = () => {
    timer = undefined;
    proxyReq.destroy(new UpstreamTimeoutError(`no response headers within ${timeouts.response} ms`, { proxyStatus: 'http_response_timeout' }));
  };

  // The response clock starts once the connection is up and the whole request
  // has been sent: a slow upload is the client's time, not the upstream's.
  const socket = proxyReq.socket;
  let connected = !socket?.connecting;
  let sent = false;
  let settled = false;
  const startResponseClock = () => {
    if (!connected || !sent || settled) return;
    clear();
    timer = setTimeout(onResponseTimeout, timeouts.response);
  };

  if (!connected) {
    timer = setTimeout(onConnectTimeout, timeouts.connect);
    socket!.once('connect', () => {
      connected = true;
      clear();
      startResponseClock();
    });
  }
  proxyReq.once('finish', () => {
    sent = true;
    startResponseClock();
  });
  const settle = () => {
    settled = true;
    clear();
  };
  proxyReq.once('response', () => {
    settle();
    // Idle: no byte either way on the upstream socket while the body streams.
    // Node's socket timeout is exactly that, and it is reset on every read and write.
    proxyReq.setTimeout(timeouts.idle, () =>
      proxyReq.destroy(new UpstreamTimeoutError(`no data for ${timeouts.idle} ms while streaming`, { proxyStatus: 'connection_read_timeout' })),
    );
  });
  // A WebSocket's frames have no clock of ours: they may rightly be quiet for hours.
  proxyReq.once('upgrade', settle);
  proxyReq.once('close', settle);
}
