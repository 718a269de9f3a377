import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Admission } from './admission.ts';
import { comesAfterLastRequest, markLastRequest } from './client/connection.ts';
import { clientIsGone, type ClientSide, type Exchange } from './exchange.ts';
import type { FailureHandler } from './failure.ts';
import { limitBody } from './guards/body-limit.ts';
import { requestFields, type Logger } from './logging.ts';
import type { Observer } from './observe/observer.ts';
import type { ResolvedOptions } from './options.ts';
import type { Balancer } from './upstream/balancer.ts';
import { awaitConnectableUpstream, mayRetryConnect, startupGraceOf } from './upstream/connect-retry.ts';
import type { Engine } from './upstream/engine.ts';

export interface Forwarding {
  /** An HTTP request: admission, the body guard, then the engine. */
  http(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void>;
  /** A WebSocket upgrade: admission, a connectable upstream when it must wait or choose, then the engine. */
  webSocket(req: IncomingMessage, socket: Duplex, head: Buffer, exchange: Exchange): Promise<void>;
}

export interface ForwardingSettings {
  config: ResolvedOptions;
  logger: Logger;
  admit: Admission;
  engine: Engine;
  balancer: Balancer;
  fail: FailureHandler;
  observer: Observer;
}

/** The stages between a request's arrival and the engine, HTTP and WebSocket alike. */
export function createForwarding({ config, logger, admit, engine, balancer, fail, observer }: ForwardingSettings): Forwarding {
  /**
   * True (after a debug record) when the request must not be forwarded after
   * all: the client left while admission was awaiting, or the request came on
   * a connection after its last request and will never be answered.
   */
  function notToForward(req: IncomingMessage, client: ClientSide, exchange: Exchange): boolean {
    if (clientIsGone(req, client)) {
      logger.debug('client closed request', requestFields(req, exchange));
      return true;
    }
    if (comesAfterLastRequest(req, exchange.arrival)) {
      logger.debug('request after the last one on its connection; not forwarded', requestFields(req, exchange));
      return true;
    }
    return false;
  }

  return {
    async http(req, res, exchange) {
      if (!res.shouldKeepAlive) markLastRequest(req, exchange.arrival);
      await admit(req, res, exchange, false);
      if (notToForward(req, res, exchange)) return;
      observer.forwarded(res, exchange);
      const limit = exchange.route!.bodyLimit ?? config.bodyLimit;
      const counted = limitBody(req, limit, exchange.replacementBody, (err) => {
        exchange.proxyReq?.destroy(err);
        fail(err, req, res);
      });
      if (counted) exchange.bodySource = counted;
      res.removeHeader('x-powered-by');
      engine.web(req, res);
    },

    async webSocket(req, socket, head, exchange) {
      // A real (unsent) ServerResponse holds the headers the limiter sets; they
      // reach the client only through a RateLimitedError's own headers.
      await admit(req, new http.ServerResponse(req), exchange, true);
      const route = exchange.route!;
      if (mayRetryConnect(route, config.startupGrace)) {
        await awaitConnectableUpstream(req, exchange, balancer, startupGraceOf(route, config.startupGrace), route.timeouts?.connect ?? config.timeouts.connect);
      }
      if (notToForward(req, socket, exchange)) return;
      engine.upgrade(req, socket, head);
    },
  };
}
