import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BadRequestError } from '../errors.ts';
import { exchangeOf } from '../exchange.ts';
import type { FailureHandler } from '../failure.ts';
import { requestFields, type Logger } from '../logging.ts';
import { ProxyOptionsError } from '../options.ts';
import { declaresBody } from '../request/body.ts';
import { holdUpgrade, isUnderPath, isWebSocketUpgrade, responseOnUpgradeSocket } from './upgrade.ts';

type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface UpgradeEntries {
  upgrade: UpgradeListener;
  upgradeThrough(app: RequestHandler, mountPath: string): UpgradeListener;
}

export interface UpgradeEntrySettings {
  logger: Logger;
  fail: FailureHandler;
  /** The proxy middleware, for upgrades served as plain HTTP. */
  middleware: RequestHandler;
  /** Proxies a WebSocket upgrade that arrived straight from the server. */
  webSocket: UpgradeListener;
}

/** The two ways upgrades reach the proxy: straight from the server, or through the Express app. */
export function createUpgradeEntries({ logger, fail, middleware, webSocket }: UpgradeEntrySettings): UpgradeEntries {
  /**
   * Node leaves an upgrade's socket with no 'error' listener. A client that
   * resets mid-handshake is the client's doing: a debug record, never an
   * unhandled 'error' that takes the process down.
   */
  function watchSocket(req: IncomingMessage, socket: Duplex): void {
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const exchange = exchangeOf(req);
      logger.debug('client connection error', { ...(exchange ? requestFields(req, exchange) : { method: req.method }), code: err.code });
    });
  }

  /**
   * An upgrade the proxy declines (not WebSocket) is answered as plain HTTP.
   * Node parses no body on an upgrade request, so one that declares a body is
   * refused: there is no way to read it.
   */
  function declineUpgrade(req: IncomingMessage, socket: Duplex): ServerResponse | undefined {
    const res = responseOnUpgradeSocket(req, socket);
    if (!declaresBody(req)) return res;
    fail(new BadRequestError('a body on an upgrade to something other than WebSocket'), req, res);
    return undefined;
  }

  return {
    upgrade(req, socket, head) {
      watchSocket(req, socket);
      if (isWebSocketUpgrade(req)) {
        webSocket(req, socket, head);
        return;
      }
      const res = declineUpgrade(req, socket);
      if (res) middleware(req, res);
    },
    upgradeThrough(app, mountPath) {
      if (typeof app !== 'function') throw new ProxyOptionsError(`upgradeThrough(app, mountPath): app must be the Express app (a function (req, res)); got ${typeof app}`);
      if (typeof mountPath !== 'string' || !mountPath.startsWith('/')) {
        throw new ProxyOptionsError(`upgradeThrough(app, mountPath): mountPath must be the path the proxy is mounted at, such as '/preview'; got ${JSON.stringify(mountPath)}`);
      }
      const prefix = mountPath.replace(/\/+$/, '');
      return (req, socket, head) => {
        // Another path's upgrade belongs to someone else (the app's own WebSocket server): not a byte from us.
        if (!isUnderPath(req.url ?? '/', prefix)) return;
        watchSocket(req, socket);
        if (isWebSocketUpgrade(req)) {
          // The proxy middleware takes the socket when the request reaches it.
          holdUpgrade(req, { socket, head });
          app(req, responseOnUpgradeSocket(req, socket));
          return;
        }
        const res = declineUpgrade(req, socket);
        if (res) app(req, res);
      };
    },
  };
}
