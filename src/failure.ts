import type { IncomingMessage } from 'node:http';
import { classifyUpstreamError } from './classify.ts';
import { settleUnreadBody } from './client/body.ts';
import { markLastRequest } from './client/connection.ts';
import { beginExchange, clientIsGone, exchangeOf, isResponse, type ClientSide } from './exchange.ts';
import { describeCause, logProxyError, requestFields, type Logger } from './logging.ts';
import type { ResolvedOptions } from './options.ts';
import { RouteNotFoundError } from './errors.ts';
import { buildErrorResponse, sendErrorResponse, withResponseHeaders, writeErrorResponseToSocket } from './respond.ts';
import { isSafeToRetry } from './upstream/retry.ts';

export type FailureHandler = (err: unknown, req: IncomingMessage, client: ClientSide | undefined) => void;

export interface FailureSettings {
  config: ResolvedOptions;
  logger: Logger;
  /** Sends the request again, on a fresh connection. */
  replay: (req: IncomingMessage, res: ClientSide) => void;
}

/**
 * Where every failure ends, wherever it is born: replay once if the keep-alive
 * race caused it, else answer with the ProxyError, or abort when the client
 * already holds part of the upstream's response.
 */
export function createFailureHandler({ config, logger, replay }: FailureSettings): FailureHandler {
  return function handleFailure(err, req, client) {
    const exchange = exchangeOf(req) ?? beginExchange(req, undefined, undefined);
    if (exchange.failed) return;
    // Bytes after a complete response fail the upstream connection, not this
    // exchange: the response is whole and goes on (RFC 9112 6.3: discard
    // them, never forward them). Node destroys that connection itself.
    if (exchange.upstreamResponse?.complete) {
      logger.warn('upstream sent bytes after a complete response; connection discarded', {
        ...requestFields(req, exchange),
        cause: describeCause(err, false),
      });
      return;
    }

    // The keep-alive race of seed 000: the pooled socket was already closed by
    // the upstream. Replaying once on a new connection is invisible and safe.
    if (
      !exchange.retried &&
      !exchange.upstreamResponded &&
      isResponse(client) &&
      !clientIsGone(req, client) &&
      isSafeToRetry(err, exchange.proxyReq, req)
    ) {
      exchange.retried = true;
      exchange.proxyReq = undefined;
      logger.debug('stale pooled connection; retrying on a fresh one', requestFields(req, exchange));
      replay(req, client);
      return;
    }

    exchange.failed = true;
    const error = classifyUpstreamError(err);

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
    if (exchange.clientHeadWritten || (isResponse(client) && client.headersSent)) {
      // Too late for a status: cut the connection so the client cannot take a
      // truncated body for a complete one (Go's ReverseProxy does the same).
      logProxyError(logger, error, req, exchange, { afterResponseStarted: true });
      client!.destroy();
      return;
    }
    logProxyError(logger, error, req, exchange);
    const response = buildErrorResponse(error, req, config, exchange.requestId);
    if (!isResponse(client)) {
      writeErrorResponseToSocket(client!, response);
      return;
    }
    settleUnreadBody(req, client);
    if (response.headers.connection === 'close') markLastRequest(req);
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
  };
}
