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

/**
 * Tracks `webSocket` until either of its sockets closes, then calls
 * `onClosed(webSocket)`. Everything here lives as long as the WebSocket, so
 * it is one closure for both sockets: `onClosed` is shared and gets what it
 * needs from the entry, and `on` rather than `once` (each socket closes once,
 * and leaving the set marks the pair closed) spares once's two wrappers.
 */
export function trackWebSocket<W extends OpenWebSocket>(tracker: Tracker, webSocket: W, onClosed: (webSocket: W) => void): void {
  tracker.webSockets.add(webSocket);
  const close = () => {
    if (!tracker.webSockets.delete(webSocket)) return;
    onClosed(webSocket);
    tracker.onSettled?.();
  };
  webSocket.client.on('close', close);
  webSocket.upstream.on('close', close);
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
