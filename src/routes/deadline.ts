import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { RouteLookupTimeoutError } from '../errors.ts';

/** What a route function, or portHostRoutes' `resolve`, gets besides the request. */
export interface RouteLookup {
  /**
   * Aborts when the lookup's deadline (`timeouts.route`) passes, its reason a
   * `TimeoutError` DOMException, or when the client's connection closes (an
   * `AbortError`). Hand it to the query that finds the route.
   */
  readonly signal: AbortSignal;
}

export const DEFAULT_ROUTE_TIMEOUT = 10_000;

export function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

const noop = () => {};

// One 'close' listener per connection, however many of its pipelined requests
// wait on a lookup: a listener each would trip Node's MaxListenersExceeded
// warning at the tenth.
const waiting = new WeakMap<Duplex, Set<() => void>>();

/**
 * Calls `left` when the client's connection closes; returns what stops
 * watching. An upgrade's socket is not read while it waits (Node paused it),
 * so a WebSocket client that leaves is seen only when its socket is destroyed.
 */
export function watchClient(req: IncomingMessage, left: () => void): () => void {
  const socket = req.socket as Duplex | null;
  if (!socket) return noop;
  if (socket.destroyed) {
    left();
    return noop;
  }
  let listeners = waiting.get(socket);
  if (!listeners) {
    const created = new Set<() => void>();
    waiting.set(socket, created);
    socket.once('close', () => {
      waiting.delete(socket);
      for (const listener of created) listener();
    });
    listeners = created;
  }
  const registered = listeners;
  registered.add(left);
  return () => registered.delete(left);
}

export function clientLeftReason(): DOMException {
  return new DOMException('the client closed the request', 'AbortError');
}

export function deadlineReason(timeoutMs: number): DOMException {
  return new DOMException(`no route within ${timeoutMs} ms`, 'TimeoutError');
}

export function lookupTimedOut(timeoutMs: number, startedAt: number, shared = false): RouteLookupTimeoutError {
  const detail = shared ? `the route lookup this request shared did not settle within ${timeoutMs} ms` : `route lookup did not settle within ${timeoutMs} ms`;
  return new RouteLookupTimeoutError(detail, { logFields: { waitedMs: Math.round(performance.now() - startedAt), timeoutMs } });
}

/**
 * One request's lookup. The AbortController, and the watch on the client's
 * connection, exist only once a resolver asks for `signal`: a resolver that
 * never reads it (or answers at once) costs neither.
 */
class PendingLookup implements RouteLookup {
  #controller: AbortController | undefined;
  #unwatch: (() => void) | undefined;
  #ended = false;
  /** Told after the signal aborted because the client left. */
  onClientLeft: ((reason: DOMException) => void) | undefined;

  readonly #req: IncomingMessage;
  readonly timeoutMs: number;

  constructor(req: IncomingMessage, timeoutMs: number) {
    this.#req = req;
    this.timeoutMs = timeoutMs;
  }

  get signal(): AbortSignal {
    if (this.#controller) return this.#controller.signal;
    const controller = (this.#controller = new AbortController());
    if (this.#ended) return controller.signal;
    this.#unwatch = watchClient(this.#req, () => {
      this.#unwatch = undefined;
      const reason = clientLeftReason();
      controller.abort(reason);
      this.onClientLeft?.(reason);
    });
    return controller.signal;
  }

  expire(reason: DOMException): void {
    this.end();
    this.#controller?.abort(reason);
  }

  end(): void {
    this.#ended = true;
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.onClientLeft = undefined;
  }
}

/** The deadline a lookup runs under: the proxy's `timeouts.route` when the proxy made it, else the default. */
export function deadlineOf(lookup: RouteLookup | undefined): number {
  return lookup instanceof PendingLookup ? lookup.timeoutMs : DEFAULT_ROUTE_TIMEOUT;
}

export type RouteDeadline = <T, R>(req: IncomingMessage, start: (lookup: RouteLookup) => T | PromiseLike<T>, settle: (value: T) => R) => R | Promise<R>;

/** `lookUpWithin` with the deadline fixed, for a table compiled once. */
export function createRouteDeadline(timeoutMs: number): RouteDeadline {
  return (req, start, settle) => lookUpWithin(timeoutMs, req, start, settle);
}

/**
 * Runs a lookup under a deadline of `timeoutMs`. A resolver that answers
 * synchronously gets no timer and no promise; one that returns a promise is
 * raced against the deadline, and the request gets a RouteLookupTimeoutError
 * when it passes, whether or not the resolver ever settles.
 */
export function lookUpWithin<T, R>(timeoutMs: number, req: IncomingMessage, start: (lookup: RouteLookup) => T | PromiseLike<T>, settle: (value: T) => R): R | Promise<R> {
  const lookup = new PendingLookup(req, timeoutMs);
  let result: T | PromiseLike<T>;
  try {
    result = start(lookup);
  } catch (err) {
    lookup.end();
    throw err;
  }
  if (!isThenable(result)) {
    lookup.end();
    return settle(result);
  }
  const pending = result;
  const startedAt = performance.now();
  return new Promise<R>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Rejected before the abort: a resolver that rejects on abort must not answer in its place.
      reject(lookupTimedOut(timeoutMs, startedAt));
      lookup.expire(deadlineReason(timeoutMs));
    }, timeoutMs);
    lookup.onClientLeft = (reason) => {
      clearTimeout(timer);
      reject(reason);
    };
    pending.then(
      (value) => {
        clearTimeout(timer);
        lookup.end();
        try {
          resolve(settle(value));
        } catch (err) {
          reject(err);
        }
      },
      (err: unknown) => {
        clearTimeout(timer);
        lookup.end();
        // A shared lookup (a cached table's, called from this function) that timed out: this request's own wait is what its record tells.
        reject(err instanceof RouteLookupTimeoutError ? lookupTimedOut(timeoutMs, startedAt, true) : err);
      },
    );
  });
}
