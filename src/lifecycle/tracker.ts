import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { InFlightResponses } from './in-flight.ts';

/** A proxied WebSocket: the client's socket and the upstream's, piped into each other. */
export interface OpenWebSocket {
  client: Duplex;
  upstream: Duplex;
}

/** What is in flight, so a shutdown knows what to wait for and what to end. */
export interface Tracker {
  /** Set by close(): new requests are refused from then on. */
  draining: boolean;
  /** HTTP responses not yet closed (each knows its request as `res.req`). */
  exchanges: InFlightResponses;
  webSockets: Set<OpenWebSocket>;
  /** Connections closing with a lingering close: answered, still reading what their client sends. */
  lingering: Set<Socket>;
  /** Called whenever something in flight ends, so a drain can notice it is done. */
  onSettled: (() => void) | undefined;
}

export function createTracker(): Tracker {
  return { draining: false, exchanges: new InFlightResponses(), webSockets: new Set(), lingering: new Set(), onSettled: undefined };
}

export function trackExchange(tracker: Tracker, res: ServerResponse): void {
  const untrack = tracker.exchanges.add(res);
  res.on('close', () => {
    untrack();
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

/** A connection in a lingering close counts as in flight until it closes. */
export function trackLingering(tracker: Tracker, socket: Socket): void {
  if (tracker.lingering.has(socket)) return;
  tracker.lingering.add(socket);
  socket.once('close', () => {
    tracker.lingering.delete(socket);
    tracker.onSettled?.();
  });
}
