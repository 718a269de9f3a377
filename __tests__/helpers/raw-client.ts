import net from 'node:net';

/**
 * A client on a raw TCP socket that writes exactly the bytes it is given, so a
 * test controls what an attacker would vary (repeated or folded fields, odd
 * framing, pipelining, a body sent late). It reads everything the server
 * sends and knows whether the server closed the connection.
 */

export interface ParsedResponse {
  statusLine: string;
  status: number;
  /** Field lines as received, names in their case. */
  rawHeaders: Array<[string, string]>;
  /** Lower-case names; repeated fields joined with ', '. */
  headers: Record<string, string>;
  body: Buffer;
  /** Only when the body runs to the end of the connection (no length, not chunked). */
  bodyToClose: boolean;
}

export interface ParseResult {
  responses: ParsedResponse[];
  /** Bytes after the last complete response. */
  rest: Buffer;
}

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

function parseHead(head: string): Pick<ParsedResponse, 'statusLine' | 'status' | 'rawHeaders' | 'headers'> {
  const [statusLine = '', ...lines] = head.split('\r\n');
  const rawHeaders: Array<[string, string]> = [];
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    rawHeaders.push([name, value]);
    const lower = name.toLowerCase();
    headers[lower] = lower in headers ? `${headers[lower]}, ${value}` : value;
  }
  return { statusLine, status: Number(statusLine.split(' ')[1]), rawHeaders, headers };
}

/** Decodes a chunked body starting at `start`; undefined while incomplete. */
function readChunked(bytes: Buffer, start: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = bytes.indexOf(CRLF, at);
    if (lineEnd === -1) return undefined;
    const size = parseInt(bytes.subarray(at, lineEnd).toString('latin1').split(';')[0]!.trim(), 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size line: ${JSON.stringify(bytes.subarray(at, lineEnd).toString('latin1'))}`);
    at = lineEnd + 2;
    if (size === 0) {
      // Trailer section: field lines until an empty line.
      for (;;) {
        const trailerEnd = bytes.indexOf(CRLF, at);
        if (trailerEnd === -1) return undefined;
        const empty = trailerEnd === at;
        at = trailerEnd + 2;
        if (empty) return { body: Buffer.concat(parts), end: at };
      }
    }
    if (bytes.length < at + size + 2) return undefined;
    parts.push(bytes.subarray(at, at + size));
    at += size + 2;
  }
}

/**
 * The complete HTTP/1.1 responses in `bytes`, in order. A body is framed by
 * chunked, then Content-Length, else (not 1xx/204/304) it runs to the end of
 * the connection, which counts as complete only when `closed`.
 */
export function parseResponses(bytes: Buffer, closed = false): ParseResult {
  const responses: ParsedResponse[] = [];
  let at = 0;
  while (at < bytes.length) {
    const headEnd = bytes.indexOf(HEAD_END, at);
    if (headEnd === -1) break;
    const head = parseHead(bytes.subarray(at, headEnd).toString('latin1'));
    const bodyStart = headEnd + 4;
    const noBody = (head.status >= 100 && head.status < 200) || head.status === 204 || head.status === 304;
    if (noBody) {
      responses.push({ ...head, body: Buffer.alloc(0), bodyToClose: false });
      at = bodyStart;
      continue;
    }
    if (/(?:^|,)\s*chunked\s*$/i.test(head.headers['transfer-encoding'] ?? '')) {
      const chunked = readChunked(bytes, bodyStart);
      if (!chunked) break;
      responses.push({ ...head, body: chunked.body, bodyToClose: false });
      at = chunked.end;
      continue;
    }
    if (head.headers['content-length'] !== undefined) {
      const length = Number(head.headers['content-length']);
      if (bytes.length < bodyStart + length) break;
      responses.push({ ...head, body: bytes.subarray(bodyStart, bodyStart + length), bodyToClose: false });
      at = bodyStart + length;
      continue;
    }
    if (!closed) break;
    responses.push({ ...head, body: bytes.subarray(bodyStart), bodyToClose: true });
    at = bytes.length;
  }
  return { responses, rest: bytes.subarray(at) };
}

export interface RawConnection {
  /** Everything received so far. */
  received(): Buffer;
  /** The complete responses received so far. */
  responses(): ParsedResponse[];
  /** True once the server ended or reset the connection. */
  closedByServer(): boolean;
  /** Milliseconds since connect at which the server closed, if it did. */
  closedAt(): number | undefined;
  /** Writes bytes as they are; resolves once they are handed to the kernel (false if the socket is gone). */
  write(bytes: string | Buffer): Promise<boolean>;
  /** Resolves true as soon as `count` complete responses are in, false after `timeoutMs`. */
  waitForResponses(count: number, timeoutMs: number): Promise<boolean>;
  /** Resolves true when the server closes the connection, false after `timeoutMs`. */
  waitForClose(timeoutMs: number): Promise<boolean>;
  /** Closes our side. */
  destroy(): void;
}

/** Opens a raw connection to 127.0.0.1:port. */
export async function openRaw(port: number): Promise<RawConnection> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const started = Date.now();
  const chunks: Buffer[] = [];
  let closed = false;
  let closedAt: number | undefined;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const waiter of [...waiters]) waiter();
  };
  const markClosed = () => {
    if (closed) return;
    closed = true;
    closedAt = Date.now() - started;
    notify();
  };
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    notify();
  });
  // A FIN from the server is its close; so is a reset (an 'error' then 'close').
  socket.on('end', markClosed);
  socket.on('error', markClosed);
  socket.on('close', markClosed);

  const received = () => Buffer.concat(chunks);
  const responses = () => parseResponses(received(), closed).responses;

  function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        finish(true);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      function finish(result: boolean) {
        clearTimeout(timer);
        waiters.delete(check);
        resolve(result);
      }
      waiters.add(check);
    });
  }

  return {
    received,
    responses,
    closedByServer: () => closed,
    closedAt: () => closedAt,
    write: (bytes) =>
      new Promise<boolean>((resolve) => {
        if (socket.destroyed || !socket.writable) return resolve(false);
        socket.write(bytes, (err) => resolve(!err));
      }),
    waitForResponses: (count, timeoutMs) => waitUntil(() => responses().length >= count, timeoutMs),
    waitForClose: (timeoutMs) => waitUntil(() => closed, timeoutMs),
    destroy: () => socket.destroy(),
  };
}

export type RawPart = string | Buffer | { delayMs: number };

export interface RawResult {
  bytes: Buffer;
  text: string;
  responses: ParsedResponse[];
  /** Whether the server closed the connection within the time allowed. */
  closedByServer: boolean;
}

/**
 * Connects, writes the parts in order (a `{ delayMs }` part waits between
 * writes), then collects until the server closes or `timeoutMs` passes with
 * the connection still open; then closes our side.
 */
export async function sendRaw(port: number, parts: RawPart | RawPart[], timeoutMs = 500): Promise<RawResult> {
  const connection = await openRaw(port);
  try {
    for (const part of Array.isArray(parts) ? parts : [parts]) {
      if (typeof part === 'object' && !Buffer.isBuffer(part)) await new Promise((resolve) => setTimeout(resolve, part.delayMs));
      else await connection.write(part);
    }
    await connection.waitForClose(timeoutMs);
    const bytes = connection.received();
    return { bytes, text: bytes.toString('latin1'), responses: connection.responses(), closedByServer: connection.closedByServer() };
  } finally {
    connection.destroy();
  }
}
