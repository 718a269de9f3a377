import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

/** Where a connection stands: how many requests arrived on it, and which of them is its last. */
interface Order {
  arrived: number;
  /** Arrival number of the first request marked last; Infinity while none is. */
  last: number;
}

// A property on the socket, not a WeakMap keyed by it: no identity hash for V8
// to make per connection (docs/performance.md measured what one costs).
const ORDER = Symbol('honest-proxy.connection-order');
type WithOrder = Duplex & { [ORDER]?: Order };

/**
 * Numbers a request in the order requests arrived on its connection. Called
 * when the request enters the proxy: pipelined requests are emitted by Node in
 * the order they were parsed, and admission then runs them concurrently, so
 * the order they finish admission in says nothing about the order they came in.
 */
export function numberArrival(req: IncomingMessage): number {
  const socket = req.socket as WithOrder;
  const order = (socket[ORDER] ??= { arrived: 0, last: Number.POSITIVE_INFINITY });
  return ++order.arrived;
}

/**
 * This request is the last its connection will answer: the client asked to
 * close, or the proxy will close after refusing it. Node goes on parsing
 * pipelined requests behind it, but RFC 9112 9.6 says no later request on the
 * connection may be processed, and behind a request whose framing was
 * refused, "the next request" is just where the attacker says it is. Requests
 * that arrived before it are still answered, in order (RFC 9112 9.3.2).
 */
export function markLastRequest(req: IncomingMessage, arrival: number): void {
  const socket = req.socket as WithOrder;
  const order = (socket[ORDER] ??= { arrived: arrival, last: Number.POSITIVE_INFINITY });
  if (arrival < order.last) order.last = arrival;
}

/** True for a request that arrived on its connection after the last one. */
export function comesAfterLastRequest(req: IncomingMessage, arrival: number): boolean {
  const order = (req.socket as WithOrder)[ORDER];
  return order !== undefined && arrival > order.last;
}

/**
 * The connection became a WebSocket: no HTTP request will arrive on it again,
 * and its order, kept on the socket, would otherwise stay as long as it does.
 * Set to undefined, not deleted: a delete would turn the socket's properties
 * into a dictionary.
 */
export function forgetRequestOrder(socket: Duplex): void {
  (socket as WithOrder)[ORDER] = undefined;
}
