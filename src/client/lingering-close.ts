import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { parseBodyLimit } from '../guards/body-limit.ts';
import { fail, isRecord, milliseconds, rejectUnknownKeys, show } from '../option-checks.ts';

/** Bounds of a lingering close, after nginx's `lingering_time` and `lingering_timeout`. */
export interface LingeringCloseOptions {
  /** Longest a lingering close lasts in all, in ms. Default 30000. */
  time?: number;
  /** Longest wait for the client's next bytes, in ms. Default 5000. */
  timeout?: number;
  /** Most request-body bytes read and dropped: a number or a size such as '64mb'. Default 256 MiB. */
  bytes?: number | string;
}

export interface LingeringLimits {
  time: number;
  timeout: number;
  bytes: number;
}

export const DEFAULT_LINGERING_CLOSE: LingeringLimits = { time: 30_000, timeout: 5_000, bytes: 256 * 1024 * 1024 };

/** The `lingeringClose` option, checked at construction; any bound left out keeps its default. */
export function resolveLingeringClose(value: unknown): LingeringLimits {
  if (value === undefined) return DEFAULT_LINGERING_CLOSE;
  if (!isRecord(value)) fail(`lingeringClose must be an object { time, timeout, bytes }; got ${show(value)}`);
  rejectUnknownKeys(value, Object.keys(DEFAULT_LINGERING_CLOSE), 'lingeringClose.');
  return {
    time: milliseconds(value.time, 'lingeringClose.time', DEFAULT_LINGERING_CLOSE.time),
    timeout: milliseconds(value.timeout, 'lingeringClose.timeout', DEFAULT_LINGERING_CLOSE.timeout),
    bytes: value.bytes === undefined ? DEFAULT_LINGERING_CLOSE.bytes : byteCount(value.bytes, 'lingeringClose.bytes'),
  };
}

/** A size as bodyLimit reads one, but never `false`: a lingering close always has a bound. */
function byteCount(value: unknown, name: string): number {
  let parsed: number | false = false;
  try {
    if (value !== false) parsed = parseBodyLimit(value, name);
  } catch {
    /* reported below, in this option's own words */
  }
  if (parsed === false) fail(`${name} must be a whole number of bytes or a size such as '64mb'; got ${show(value)}`);
  return parsed;
}

/** Told of each connection that starts closing this way, so a shutdown can wait for it and end it. */
export type TrackLingering = (socket: Socket) => void;

/**
 * Closes a connection whose client may still be sending its body, as nginx's
 * lingering close does. Our side ends (a FIN after the response), and what
 * the client goes on sending is read and dropped until it closes its side or
 * a bound runs out; only then is the socket destroyed. Destroying it at once,
 * with unread bytes in the kernel, sends a reset, and a reset can wipe the
 * response from the client's receive buffer before the client (still busy
 * writing) reads it: it sees EPIPE or ECONNRESET instead of the 413.
 */
function lingerThenClose(req: IncomingMessage, limits: LingeringLimits, track: TrackLingering): void {
  const socket = req.socket as Socket;
  // Once is enough: Node may have begun it already, for a response that said `Connection: close`.
  if (socket.destroyed || socket.writableEnded) return;
  track(socket);
  socket.end();
  const stop = () => socket.destroy();
  const deadline = setTimeout(stop, limits.time);
  // Node's parser counts as activity (it resets the socket's timer), so this is an idle bound.
  socket.setTimeout(limits.timeout, stop);
  let dropped = 0;
  const count = (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > limits.bytes) stop();
  };
  req.on('data', count);
  socket.once('close', () => {
    clearTimeout(deadline);
    req.off('data', count);
  });
}

export interface LingeringClose {
  /**
   * Node will close this connection after the response (it says
   * `Connection: close`): make that close a lingering one.
   */
  whenNodeCloses(req: IncomingMessage): void;
  /** Close this connection now (its response is done), lingering. */
  now(req: IncomingMessage): void;
}

export function createLingeringClose(limits: LingeringLimits, track: TrackLingering): LingeringClose {
  return {
    whenNodeCloses(req) {
      // Node's server ends a `Connection: close` response's socket with
      // destroySoon(), which destroys it as soon as the response is flushed;
      // it has no lingering close of its own.
      (req.socket as Socket).destroySoon = () => lingerThenClose(req, limits, track);
    },
    now(req) {
      lingerThenClose(req, limits, track);
    },
  };
}
