import { randomBytes } from 'node:crypto';
import type { Logger } from '../logging.ts';
import type { UpstreamAgents } from '../upstream/agent.ts';
import type { OpenWebSocket, Tracker } from './tracker.ts';

export interface CloseOptions {
  /** How long in-flight requests may take to finish, in ms. Default 5000. */
  timeout?: number;
}

export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
// RFC 6455 7.4.1: 1001, "going away": a server going down.
const GOING_AWAY = Buffer.from([0x03, 0xe9]);

/** A close frame: unmasked from a server to its client, masked from a client to its server (RFC 6455 5.3). */
function closeFrame(masked: boolean): Buffer {
  if (!masked) return Buffer.concat([Buffer.from([0x88, GOING_AWAY.length]), GOING_AWAY]);
  const mask = randomBytes(4);
  const payload = Buffer.from(GOING_AWAY.map((byte, i) => byte ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x88, 0x80 | GOING_AWAY.length]), mask, payload]);
}

/**
 * Ends a proxied WebSocket as a server going away would: each side gets a
 * close frame 1001, then its socket ends. The piping stops first, so no frame
 * of either side is cut by the close frame; a frame already half sent when the
 * shutdown came is cut, as it would be by any server going down.
 */
function goAway({ client, upstream }: OpenWebSocket, graceMs: number): void {
  upstream.unpipe(client);
  client.unpipe(upstream);
  if (client.writable) client.end(closeFrame(false));
  if (upstream.writable) upstream.end(closeFrame(true));
  // Unpiped, nothing reads them: without a reader neither peer's close frame
  // and FIN would be seen, and every WebSocket would wait out the grace.
  client.resume();
  upstream.resume();
  setTimeout(() => {
    client.destroy();
    upstream.destroy();
  }, graceMs).unref();
}

/**
 * The proxy's shutdown (nginx's and Envoy's drain): refuse new requests (503,
 * Connection: close, Retry-After), say goodbye to WebSockets, let in-flight
 * requests finish until the deadline and abort the rest, then drop the pool.
 */
export function createShutdown(tracker: Tracker, agents: UpstreamAgents, logger: Logger): (options?: CloseOptions) => Promise<void> {
  let closing: Promise<void> | undefined;
  return (options = {}) => {
    closing ??= (async () => {
      const timeout = options.timeout ?? DEFAULT_CLOSE_TIMEOUT_MS;
      tracker.draining = true;
      // A response not begun yet will close its connection after it.
      for (const res of tracker.exchanges) if (!res.headersSent) res.shouldKeepAlive = false;
      for (const webSocket of tracker.webSockets) goAway(webSocket, Math.min(timeout, 1_000));

      const settled = new Promise<void>((resolve) => {
        const check = () => {
          if (tracker.exchanges.size === 0 && tracker.webSockets.size === 0 && tracker.lingering.size === 0) resolve();
        };
        tracker.onSettled = check;
        check();
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), timeout)));
      const result = await Promise.race([settled, deadline]);
      clearTimeout(timer);
      tracker.onSettled = undefined;

      if (result === 'deadline') {
        const requests = tracker.exchanges.size;
        const webSockets = tracker.webSockets.size;
        const lingering = tracker.lingering.size;
        logger.warn('shutdown deadline reached; aborting what is still in flight', { requests, webSockets, lingering, timeoutMs: timeout });
        for (const res of tracker.exchanges) {
          res.destroy();
          res.req.socket.destroy();
        }
        for (const { client, upstream } of tracker.webSockets) {
          client.destroy();
          upstream.destroy();
        }
        for (const socket of tracker.lingering) socket.destroy();
      }
      agents.destroy();
    })();
    return closing;
  };
}
