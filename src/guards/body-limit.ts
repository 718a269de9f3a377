import type { IncomingMessage } from 'node:http';
import bytes from 'bytes';
import { PayloadTooLargeError } from '../errors.ts';

export const DEFAULT_BODY_LIMIT = 10 * 1024 * 1024;

// `bytes` alone reads '10 MiB' as 10 and '-1kb' as -1024; only its own units, whole.
const SIZE_PATTERN = /^\d+(?:\.\d+)? *(?:b|kb|mb|gb|tb|pb)?$/i;

/** A byte count from a number or a string such as '10mb'; `false` for no limit. Throws a TypeError naming `where`. */
export function parseBodyLimit(value: unknown, where: string): number | false {
  if (value === false) return false;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'string' && SIZE_PATTERN.test(value.trim())) {
    const parsed = bytes.parse(value.trim());
    if (parsed !== null && Number.isSafeInteger(parsed)) return parsed;
  }
  throw new TypeError(
    `${where} must be false, a whole number of bytes, or a size such as '512kb' or '10mb' (units b, kb, mb, gb, tb, pb); got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`,
  );
}

/**
 * The Content-Length check: a declared body over the limit is refused before a
 * byte of it is read. `Connection: close` because the unread body is still on
 * the wire.
 */
export function checkDeclaredLength(req: IncomingMessage, limit: number): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined) checkLength(Number(declared), limit);
}

function checkLength(length: number, limit: number): void {
  if (length > limit) {
    throw new PayloadTooLargeError(`declared body of ${length} bytes over the limit of ${limit}`, { headers: { connection: 'close' } });
  }
}

/** True when the body's size is unknown up front (chunked), so it must be counted as it streams. */
export function hasUndeclaredBody(req: IncomingMessage): boolean {
  return req.headers['content-length'] === undefined && req.headers['transfer-encoding'] !== undefined;
}

/** What the engine pipes to the upstream request instead of the request itself. */
export interface BodySource {
  pipe<T extends NodeJS.WritableStream>(destination: T): T;
}

/**
 * The request's own body, counted as it is piped. The count listener is added
 * just before the pipe's, so on the chunk that crosses the limit it runs first
 * and `onOverflow` destroys the upstream request: the pipe's write of that
 * chunk then sends nothing. No stream in between: a Transform here doubled the
 * stream work for every chunk of every chunked upload.
 */
function countedBody(req: IncomingMessage, limit: number, onOverflow: (err: PayloadTooLargeError) => void): BodySource {
  let seen = 0;
  const count = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen <= limit) return;
    req.removeListener('data', count);
    req.unpipe();
    onOverflow(new PayloadTooLargeError(`streamed body passed the limit of ${limit} bytes`, { headers: { connection: 'close' } }));
  };
  return {
    pipe(destination) {
      // Once: the engine pipes the body only after the one connect that succeeded.
      if (!req.listeners('data').includes(count)) req.on('data', count);
      return req.pipe(destination);
    },
  };
}

/**
 * The body-size guard: a declared body over the limit is refused before a
 * byte of it is read; a chunked one is counted on its way, and `onOverflow`
 * gets the PayloadTooLargeError before the chunk that crosses the limit is
 * forwarded, and must destroy the upstream request there and then. Returns
 * what the engine must pipe instead of req, if anything.
 */
export function limitBody(
  req: IncomingMessage,
  limit: number | false,
  replacement: Buffer | undefined,
  onOverflow: (err: PayloadTooLargeError) => void,
): BodySource | undefined {
  if (limit === false) return undefined;
  // A body a parser already read and the proxy encoded again: its size is known.
  if (replacement) return void checkLength(replacement.length, limit);
  checkDeclaredLength(req, limit);
  if (!hasUndeclaredBody(req)) return undefined;
  return countedBody(req, limit, onOverflow);
}
