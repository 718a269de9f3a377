import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** A proxied WebSocket: the client's socket and the upstream's, piped into each other. */
export interface OpenWebSocket {
  client: Duplex;
  upstream: Duplex;
}

/** What is in flight, so a shutdown knows what to wait for and what to end. */
export interface Tracker {
  /** Set by close(): new requests are refused from then on. */
  draining: boolean;
  exchanges: Map<IncomingMessage, ServerResponse>;
  webSockets: Set<OpenWebSocket>;
  /** Called whenever something in flight ends, so a drain can notice it is done. */
  onSettled: (() => void) | undefined;
}

export function createTracker(): Tracker {
  return { draining: false, exchanges: new Map(), webSockets: new Set(), onSettled: undefined };
}

export function trackExchange(tracker: Tracker, req: IncomingMessage, res: ServerResponse): void {
  tracker.exchanges.set(req, res);
  res.on('close', () => {
    tracker.exchanges.delete(req);
    tracker.onSettled?.();
  });
}

export function trackWebSocket(tracker: Tracker, webSocket: OpenWebSocket, onClosed: () => void): void {
  tracker.webSockets.add(webSocket);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    tracker.webSockets.delete(webSocket);
    onClosed();
    tracker.onSettled?.();
  };
  webSocket.client.once('close', close);
  webSocket.upstream.once('close', close);
}
