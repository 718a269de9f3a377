import type { IncomingMessage } from 'node:http';
import { classifyUpstreamError } from './classify.ts';
import type { UnreadBodySettler } from './client/body.ts';
import { markLastRequest } from './client/connection.ts';
import { beginExchange, clientIsGone, exchangeOf, isResponse, type ClientSide, type Exchange } from './exchange.ts';
import { describeCause, requestFields, type Logger } from './logging.ts';
import type { FailureLog } from './observe/failure-log.ts';
import type { ResolvedOptions } from './options.ts';
import { RouteNotFoundError, type ProxyError } from './errors.ts';
import { buildErrorResponse, sendErrorResponse, withResponseHeaders, writeErrorResponseToSocket } from './respond.ts';
import type { Balancer } from './upstream/balancer.ts';
import { isConnectFailure, planConnectRetry, startupGraceOf } from './upstream/connect-retry.ts';
import { isSafeToRetry } from './upstream/retry.ts';
import type { Observer } from './observe/observer.ts';
import { upstreamId } from './upstream/address.ts';

export type FailureHandler = (err: unknown, req: IncomingMessage, client: ClientSide | undefined) => void;

export interface FailureSettings {
  config: ResolvedOptions;
  logger: Logger;
  /** Where answered failures are recorded (identical upstream failures folded). */
  failureLog: FailureLog;
  balancer: Balancer;
  observer: Observer;
  settleUnreadBody: UnreadBodySettler;
  /** Sends the request again (to `exchange.upstream`), after `delayMs`. */
  replay: (req: IncomingMessage, res: ClientSide, delayMs: number) => void;
}

/**
 * Where every failure ends, wherever it is born: replay once if the keep-alive
 * race caused it, else answer with the ProxyError, or abort when the client
 * already holds part of the upstream's response.
 */
export function createFailureHandler({ config, logger, failureLog, balancer, observer, settleUnreadBody, replay }: FailureSettings): FailureHandler {
  /**
   * A connect failure sent nothing upstream: try another upstream of the
   * route, or wait out a startup grace. The body is still unread (the engine
   * opens it to the upstream only once connected). Returns the error to answer
   * with when there is no retry.
   */
  function retryConnect(err: unknown, req: IncomingMessage, client: ClientSide, exchange: Exchange): unknown {
    const grace = startupGraceOf(exchange.route!, config.startupGrace);
    const retry = planConnectRetry(err, req, exchange, balancer, grace);
    if ('error' in retry) return retry.error;
    logger.debug('upstream connect failed; trying again', { ...requestFields(req, exchange), next: upstreamId(retry.upstream), delayMs: retry.delayMs });
    exchange.upstream = retry.upstream;
    exchange.proxyReq = undefined;
    replay(req, client, retry.delayMs);
    return undefined;
  }

  /** Sends the request again when that is safe and useful; returns the error to answer with otherwise. */
  function tryAgain(err: unknown, req: IncomingMessage, client: ClientSide | undefined, exchange: Exchange): unknown {
    if (!isResponse(client) || exchange.upstreamResponded || clientIsGone(req, client)) return err;
    if (exchange.upstream && isConnectFailure(err)) return retryConnect(err, req, client, exchange);
    // The stale keep-alive connection race: the pooled socket was already
    // closed by the upstream. Replaying once on a new connection is invisible and safe.
    if (!exchange.retried && isSafeToRetry(err, exchange.proxyReq, req)) {
      exchange.retried = true;
      exchange.proxyReq = undefined;
      logger.debug('stale pooled connection; retrying on a fresh one', requestFields(req, exchange));
      replay(req, client, 0);
      return undefined;
    }
    return err;
  }

  /** The client's answer: hand on (fallthrough, onError 'next'), abort, or the error response. */
  function answer(error: ProxyError, req: IncomingMessage, client: ClientSide | undefined, exchange: Exchange): void {
    // serve-static's convention: a miss hands the request on, body unread.
    if (error instanceof RouteNotFoundError && config.fallthrough && exchange.next && isResponse(client)) {
      exchange.next();
      return;
    }
    // First, because a client that left takes the upstream exchange down with it.
    if (clientIsGone(req, client)) {
      logger.debug('client closed request', { ...requestFields(req, exchange), code: error.code });
      return;
    }
    exchange.error = error;
    observer.failed(req, exchange, error);
    if (exchange.clientHeadWritten || (isResponse(client) && client.headersSent)) {
      // Too late for a status: cut the connection so the client cannot take a
      // truncated body for a complete one (Go's ReverseProxy does the same).
      failureLog.record(error, req, exchange, { afterResponseStarted: true });
      client!.destroy();
      return;
    }
    failureLog.record(error, req, exchange);
    const response = buildErrorResponse(error, req, config, exchange.requestId);
    if (!isResponse(client)) {
      writeErrorResponseToSocket(client!, response);
      return;
    }
    settleUnreadBody(req, client, exchange.arrival);
    if (response.headers.connection === 'close') markLastRequest(req, exchange.arrival);
    if (config.onError === 'next' && exchange.next) {
      exchange.next(withResponseHeaders(error, response));
      return;
    }
    try {
      sendErrorResponse(client, response);
    } catch (err) {
      // E.g. a header value Node refuses, from an error a resolver built. We run
      // inside an event handler: a throw here would take the process down.
      logger.error('could not write the error response', { ...requestFields(req, exchange), cause: describeCause(err, true) });
      client.destroy();
    }
  }

  return function handleFailure(cause, req, client) {
    const exchange = exchangeOf(req) ?? beginExchange(req, undefined, undefined);
    if (exchange.failed) return;
    // Bytes after a complete response fail the upstream connection, not this
    // exchange: the response is whole and goes on (RFC 9112 6.3: discard
    // them, never forward them). Node destroys that connection itself.
    if (exchange.upstreamResponse?.complete) {
      logger.warn('upstream sent bytes after a complete response; connection discarded', { ...requestFields(req, exchange), cause: describeCause(cause, false) });
      return;
    }
    const err = tryAgain(cause, req, client, exchange);
    if (err === undefined) return;
    exchange.failed = true;
    answer(classifyUpstreamError(err), req, client, exchange);
  };
}
