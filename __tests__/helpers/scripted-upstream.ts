import net, { type Socket } from 'node:net';
import { listen, type Running } from './servers.ts';

/**
 * A scripted upstream and a raw client, both on bare `net` sockets, so a test
 * states the exact bytes on each wire. Node's HTTP server and client would
 * refuse to produce (or would quietly repair) most of what these tests send.
 */

// ---------------------------------------------------------------------------
// The upstream
// ---------------------------------------------------------------------------

/** One request as the upstream received it. */
export interface UpstreamRequest {
  /** 1 for the first connection the upstream accepted, 2 for the second, ... */
  connection: number;
  /** 1 for the first request on its connection, 2 for the second, ... */
  onConnection: number;
  method: string;
  target: string;
  /** Field lines as received, names lower-cased. */
  headers: Array<[string, string]>;
  body: Buffer;
  /** The request's bytes exactly as received (head and body). */
  raw: Buffer;
}

/** Wait this many ms before the next step. */
export interface Wait {
  waitMs: number;
}
/** How the upstream leaves the connection after its bytes: FIN, close at once, or RST. */
export type Close = { close: 'end' | 'destroy' | 'reset' };
export type Step = string | Buffer | Wait | Close;

export const wait = (waitMs: number): Wait => ({ waitMs });
export const END: Close = { close: 'end' };
export const DESTROY: Close = { close: 'destroy' };
export const RESET: Close = { close: 'reset' };

/** Every connection's life, and every byte the upstream read on it. */
export interface ConnectionRecord {
  id: number;
  openedAt: number;
  closedAt: number | undefined;
  /** Every byte received on the connection, in order. */
  received: Buffer;
  requests: UpstreamRequest[];
  /** The peer (the proxy) half-closed the connection (FIN). */
  peerEnded: boolean;
  /** The peer (the proxy) reset the connection. */
  peerReset: boolean;
  /** The script closed the connection itself (END, DESTROY or RESET). */
  closedByScript: boolean;
}

export interface ScriptedUpstream extends Running {
  connections: ConnectionRecord[];
  requests: UpstreamRequest[];
  /** Resolves true once the connection has closed, false if it is still open after `timeoutMs`. */
  closed(connection: number, timeoutMs: number): Promise<boolean>;
}

export type Script = (request: UpstreamRequest) => Step[];

function parseHead(head: string): { method: string; target: string; headers: Array<[string, string]> } {
  const [requestLine = '', ...lines] = head.split('\r\n');
  const [method = '', target = ''] = requestLine.split(' ');
  const headers: Array<[string, string]> = lines.map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
  });
  return { method, target, headers };
}

/** Where a request that starts at 0 ends in `buffered`, or -1 while it is incomplete. */
function requestEnd(buffered: Buffer, headEnd: number, headers: Array<[string, string]>): number {
  const bodyStart = headEnd + 4;
  const te = headers.find(([name]) => name === 'transfer-encoding')?.[1];
  if (te !== undefined && /chunked\s*$/i.test(te)) {
    let pos = bodyStart;
    for (;;) {
      const lineEnd = buffered.indexOf('\r\n', pos);
      if (lineEnd === -1) return -1;
      const size = parseInt(buffered.subarray(pos, lineEnd).toString('latin1'), 16);
      if (size === 0) {
        // No trailers from Node's client: the last chunk is followed by CRLF.
        const end = buffered.indexOf('\r\n\r\n', lineEnd);
        return end === -1 ? -1 : end + 4;
      }
      pos = lineEnd + 2 + size + 2;
      if (pos > buffered.length) return -1;
    }
  }
  const length = Number(headers.find(([name]) => name === 'content-length')?.[1] ?? 0);
  return buffered.length < bodyStart + length ? -1 : bodyStart + length;
}

/**
 * A raw HTTP/1.1 upstream: for each request (the n-th on the m-th
 * connection), `script` returns the steps to play: bytes to write, waits, and
 * how to close. Replies on one connection are played in order.
 */
export async function startScriptedUpstream(script: Script): Promise<ScriptedUpstream> {
  const connections: ConnectionRecord[] = [];
  const requests: UpstreamRequest[] = [];
  const closeWaiters = new Map<number, Array<() => void>>();

  const server = net.createServer((socket: Socket) => {
    const record: ConnectionRecord = {
      id: connections.length + 1,
      openedAt: performance.now(),
      closedAt: undefined,
      received: Buffer.alloc(0),
      requests: [],
      peerEnded: false,
      peerReset: false,
      closedByScript: false,
    };
    connections.push(record);
    socket.on('end', () => {
      record.peerEnded = true;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') record.peerReset = true;
    });
    socket.once('close', () => {
      record.closedAt = performance.now();
      for (const resolve of closeWaiters.get(record.id) ?? []) resolve();
      closeWaiters.delete(record.id);
    });

    let buffered = Buffer.alloc(0);
    let playing: Promise<void> = Promise.resolve();

    const play = async (steps: Step[]): Promise<void> => {
      for (const step of steps) {
        if (socket.destroyed) return;
        if (typeof step === 'string' || Buffer.isBuffer(step)) {
          const bytes = typeof step === 'string' ? Buffer.from(step, 'latin1') : step;
          // Waiting for the write to be flushed keeps a following close from discarding it.
          await new Promise<void>((resolve) => socket.write(bytes, () => resolve()));
        } else if ('waitMs' in step) {
          await new Promise((resolve) => setTimeout(resolve, step.waitMs));
        } else {
          record.closedByScript = true;
          if (step.close === 'end') socket.end();
          else if (step.close === 'destroy') socket.destroy();
          else socket.resetAndDestroy();
          return;
        }
      }
    };

    socket.on('data', (chunk: Buffer) => {
      record.received = Buffer.concat([record.received, chunk]);
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const headEnd = buffered.indexOf('\r\n\r\n');
        if (headEnd === -1) return;
        const { method, target, headers } = parseHead(buffered.subarray(0, headEnd).toString('latin1'));
        const end = requestEnd(buffered, headEnd, headers);
        if (end === -1) return;
        const request: UpstreamRequest = {
          connection: record.id,
          onConnection: record.requests.length + 1,
          method,
          target,
          headers,
          body: Buffer.from(buffered.subarray(headEnd + 4, end)),
          raw: Buffer.from(buffered.subarray(0, end)),
        };
        buffered = buffered.subarray(end);
        record.requests.push(request);
        requests.push(request);
        const steps = script(request);
        playing = playing.then(() => play(steps));
      }
    });
  });

  const running = await listen(server);
  return Object.assign(running, {
    connections,
    requests,
    closed(connection: number, timeoutMs: number): Promise<boolean> {
      const record = connections[connection - 1];
      if (record?.closedAt !== undefined) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        const waiters = closeWaiters.get(connection) ?? [];
        waiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
        closeWaiters.set(connection, waiters);
      });
    },
  });
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

export interface ParsedResponse {
  statusLine: string;
  status: number;
  /** Field lines as received, names lower-cased. */
  headers: Array<[string, string]>;
  /** The body after chunked decoding, if any. */
  body: Buffer;
  framing: 'none' | 'length' | 'chunked' | 'close';
  /** Complete by its own framing (close-delimited: the peer ended gracefully). */
  complete: boolean;
}

export function header(response: ParsedResponse | undefined, name: string): string | undefined {
  return response?.headers.find(([field]) => field === name.toLowerCase())?.[1];
}

/**
 * Splits bytes into HTTP/1.1 responses the way a client would, for a request
 * with `method`. Parsing stops at the first incomplete response; what is left
 * over is returned as is.
 */
export function parseResponses(raw: Buffer, method: string, endedGracefully: boolean): { responses: ParsedResponse[]; leftover: Buffer } {
  const responses: ParsedResponse[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', pos);
    if (headEnd === -1) break;
    const [statusLine = '', ...lines] = raw.subarray(pos, headEnd).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/\d\.\d (\d{3})(?: |$)/.exec(statusLine)?.[1] ?? NaN);
    const headers: Array<[string, string]> = lines.map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    });
    const field = (name: string) => headers.find(([f]) => f === name)?.[1];
    const bodyStart = headEnd + 4;
    const response: ParsedResponse = { statusLine, status, headers, body: Buffer.alloc(0), framing: 'none', complete: true };
    responses.push(response);

    if ((status >= 100 && status < 200) || status === 204 || status === 304 || (method === 'HEAD' && status >= 200)) {
      pos = bodyStart;
      continue;
    }
    const te = field('transfer-encoding');
    const cl = field('content-length');
    if (te !== undefined && /chunked\s*$/i.test(te)) {
      response.framing = 'chunked';
      const parts: Buffer[] = [];
      let at = bodyStart;
      let done = false;
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', at);
        if (lineEnd === -1) break;
        const size = parseInt(raw.subarray(at, lineEnd).toString('latin1'), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const end = raw.indexOf('\r\n\r\n', lineEnd);
          if (end !== -1) {
            at = end + 4;
            done = true;
          }
          break;
        }
        const dataEnd = lineEnd + 2 + size;
        parts.push(raw.subarray(lineEnd + 2, Math.min(dataEnd, raw.length)));
        if (dataEnd + 2 > raw.length) {
          at = raw.length;
          break;
        }
        at = dataEnd + 2;
      }
      response.body = Buffer.concat(parts);
      response.complete = done;
      pos = done ? at : raw.length;
    } else if (cl !== undefined) {
      response.framing = 'length';
      const end = bodyStart + Number(cl);
      response.body = Buffer.from(raw.subarray(bodyStart, Math.min(end, raw.length)));
      response.complete = raw.length >= end;
      pos = Math.min(end, raw.length);
    } else {
      response.framing = 'close';
      response.body = Buffer.from(raw.subarray(bodyStart));
      response.complete = endedGracefully;
      pos = raw.length;
    }
    if (!response.complete) break;
  }
  return { responses, leftover: Buffer.from(raw.subarray(pos)) };
}

export interface ClientExchange {
  /** Every byte the client received. */
  raw: Buffer;
  text: string;
  /** Every response on the wire, interim ones included, in order. */
  responses: ParsedResponse[];
  /** The first final (non-1xx) response. */
  final: ParsedResponse | undefined;
  /** Bytes after the last complete response that do not make one. */
  leftover: Buffer;
  /** The server closed the connection (FIN or RST) before the client gave up. */
  closed: boolean;
  /** ... and it was a reset. */
  reset: boolean;
  /** Neither a complete final response nor a close came in time. */
  timedOut: boolean;
  /** Each chunk as it arrived, in ms since the request was written. */
  chunks: Array<{ atMs: number; bytes: Buffer }>;
  /** Ms from writing the request until the received bytes first contained `text`. */
  msUntil(text: string): number | undefined;
}

export interface SendOptions {
  /** Give up after this many ms. */
  timeoutMs?: number;
  /** Keep reading this long after the final response is complete (to catch anything extra). */
  lingerMs?: number;
}

/**
 * Writes `request` on a fresh connection and reads until the final response
 * is complete by its framing (then `lingerMs` more), the server closes, or
 * `timeoutMs` passes. The request's method decides HEAD framing.
 */
export function sendRaw(port: number, request: string | Buffer, options: SendOptions = {}): Promise<ClientExchange> {
  const { timeoutMs = 3_000, lingerMs = 0 } = options;
  const bytes = typeof request === 'string' ? Buffer.from(request, 'latin1') : request;
  const method = bytes.subarray(0, bytes.indexOf(' ')).toString('latin1');
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: ClientExchange['chunks'] = [];
    let raw = Buffer.alloc(0);
    let sentAt = 0;
    let closed = false;
    let reset = false;
    let ended = false;
    let settled = false;
    let lingerTimer: NodeJS.Timeout | undefined;

    const snapshot = () => parseResponses(raw, method, ended);
    const finish = (timedOut: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(overall);
      clearTimeout(lingerTimer);
      socket.destroy();
      const { responses, leftover } = snapshot();
      resolve({
        raw,
        text: raw.toString('latin1'),
        responses,
        final: responses.find((r) => r.status >= 200),
        leftover,
        closed,
        reset,
        timedOut,
        chunks,
        msUntil(text: string) {
          let seen = Buffer.alloc(0);
          for (const chunk of chunks) {
            seen = Buffer.concat([seen, chunk.bytes]);
            if (seen.includes(text, 0, 'latin1')) return chunk.atMs;
          }
          return undefined;
        },
      });
    };
    const overall = setTimeout(() => finish(true), timeoutMs);

    socket.on('connect', () => {
      sentAt = performance.now();
      socket.write(bytes);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push({ atMs: performance.now() - sentAt, bytes: chunk });
      raw = Buffer.concat([raw, chunk]);
      const final = snapshot().responses.find((r) => r.status >= 200);
      if (final?.complete && lingerTimer === undefined) lingerTimer = setTimeout(() => finish(false), lingerMs);
    });
    socket.on('end', () => {
      ended = true;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') reset = true;
    });
    socket.on('close', () => {
      closed = true;
      finish(false);
    });
  });
}
