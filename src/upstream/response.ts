import type { ClientRequest, IncomingMessage, InformationEvent, ServerResponse } from 'node:http';
import type { UnreadBodySettler } from '../client/body.ts';
import { UpstreamProtocolError, UpstreamUnreachableError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import { isChunkedOnly } from './head-lines.ts';
import { connectionTokens, HOP_BY_HOP } from './hop-by-hop.ts';
import { responseShapingFor, shapeResponseHead } from './response-headers.ts';
import { relayTransformed, type ResponseTransforms } from './response-transform.ts';
import { REWRITABLE_FIELDS, rewriteField, type RewriteSettings } from './rewrite.ts';

// RFC 9112 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ).
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * What is wrong with an upstream's final status line, if anything. Node's
 * parser takes any three digits (`000`, `099`, `600`) and control characters
 * in the reason phrase; Node's server would throw on writing either back out.
 */
export function statusLineProblem(proxyRes: IncomingMessage): string | undefined {
  const status = proxyRes.statusCode ?? 0;
  if (status < 200 || status > 599) return `invalid status code ${String(status).padStart(3, '0')}`;
  if (!REASON_PHRASE.test(proxyRes.statusMessage ?? '')) return 'control character in the reason phrase';
  return undefined;
}

// Lengths of the field names the relay looks at (hop-by-hop, Content-Type,
// rewritable ones): only those are lowered to compare, the rest is copied.
const LOOKED_AT = new Set([...HOP_BY_HOP, ...REWRITABLE_FIELDS, 'content-type'].map((name) => name.length));

interface ClientHead {
  lines: string[];
  /** An event stream's client needs the head at once (its `open`), not with the first event. */
  eventStream: boolean;
}

/**
 * The upstream's field lines as sent (names in their case, repeats kept), less
 * what belongs to the upstream connection: hop-by-hop fields and those its
 * Connection header names. Transfer-Encoding is framing; the client side's is
 * Node's to choose, unless the upstream applied a coding besides chunked,
 * which the client must be told of (HTTP/1.1 clients only). Read from
 * rawHeaders alone: the parsed headers object is built only if asked for.
 */
function clientHead(proxyRes: IncomingMessage, context: RelayContext): ClientHead {
  const raw = proxyRes.rawHeaders;
  let listed: readonly string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      const names = connectionTokens(raw[i + 1]);
      if (names.length > 0) listed = [...(listed ?? []), ...names];
    }
  }
  const status = proxyRes.statusCode!;
  const keepCodings = context.req.httpVersion !== '1.0' && status !== 204 && status !== 304;
  const { rewrites } = context;
  const lines: string[] = [];
  let eventStream = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (!listed && !LOOKED_AT.has(name.length)) {
      lines.push(name, value);
      continue;
    }
    const lower = name.toLowerCase();
    if (lower === 'transfer-encoding') {
      if (keepCodings && !isChunkedOnly(value) && /(?:^|,)\s*chunked\s*$/i.test(value)) lines.push(name, value);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || listed?.includes(lower)) continue;
    if (lower === 'content-type') eventStream = value.toLowerCase().startsWith('text/event-stream');
    const rewritten = REWRITABLE_FIELDS.has(lower) ? rewriteField(rewrites, context.exchange.route!, context.req, context.exchange.upstream!, context.exchange.trust!, lower, value) : value;
    lines.push(name, rewritten);
  }
  return { lines, eventStream };
}

export interface RelayContext {
  req: IncomingMessage;
  res: ServerResponse;
  exchange: Exchange;
  proxyReq: ClientRequest;
  /** Location and Set-Cookie rewriting. */
  rewrites: RewriteSettings;
  settleUnreadBody: UnreadBodySettler;
  fail: (err: unknown) => void;
  /** transformResponse: the proxy-wide rule (a route's own is on the route). */
  transforms: ResponseTransforms;
}

/**
 * Hands the upstream's response to the client, untouched but for hop-by-hop
 * fields. The rule for an upstream that fails part way: until the head is
 * written to the client, nothing is lost and the client gets a 502; after,
 * only an abort is honest. The head goes out with the first body byte (or at
 * the end of an empty body; at once for an event stream), so an upstream that
 * dies between its head and its body is a 502, never a silent empty 200.
 * A response a `transformResponse` chooses takes the same rule through its
 * own pipeline (response-transform.ts); every other one is relayed here.
 */
export function relayResponse(proxyRes: IncomingMessage, context: RelayContext): void {
  const { req, res, exchange, proxyReq, fail } = context;
  exchange.upstreamResponse = proxyRes;
  exchange.upstreamResponded = true;
  // Failures are read from 'close' below; an 'error' nobody listens to would crash the process.
  proxyRes.on('error', () => {});

  const problem = statusLineProblem(proxyRes);
  if (problem) {
    // The socket is not reused: whatever else it carries cannot be trusted.
    proxyReq.destroy();
    fail(new UpstreamProtocolError(problem));
    return;
  }

  const head = clientHead(proxyRes, context);
  let { lines } = head;
  const shaping = responseShapingFor(exchange.route!.responseHeaders, context.rewrites.responseHeaders);
  if (shaping) {
    try {
      lines = shapeResponseHead(lines, shaping, proxyRes, req);
    } catch (err) {
      // Still in the 'response' event: nothing of the body is read, nothing sent; the connection is not reused.
      proxyReq.destroy();
      fail(err);
      return;
    }
  }
  // The one field the proxy adds of its own: balance: { cookie } keeping the client on this upstream.
  if (exchange.setCookie) lines.push('Set-Cookie', exchange.setCookie);
  const writeHead = (fields: readonly string[]): boolean => {
    // The exchange may have failed since (a client gone, a timeout): then the client has its answer.
    if (exchange.failed || res.headersSent) return false;
    try {
      res.writeHead(proxyRes.statusCode!, proxyRes.statusMessage, fields as string[]);
    } catch (err) {
      if (!res.headersSent) for (const name of res.getHeaderNames()) res.removeHeader(name);
      proxyReq.destroy();
      // At the end of an empty body Node has already handed the socket back to the pool (proxyReq.destroy() no longer reaches it): not reused either.
      proxyReq.socket?.destroy();
      // Complete or not, this response goes no further: not the case of bytes after a complete response (failure.ts).
      exchange.upstreamResponse = undefined;
      fail(new UpstreamProtocolError('response head the client side refuses', { cause: err }));
      return false;
    }
    exchange.clientHeadWritten = true;
    return true;
  };

  // The one test a response pays when no transform is set: the route's own, then the proxy-wide one.
  const rule = exchange.route!.transformResponse ?? context.transforms.wide;
  const transformed = rule ? relayTransformed(rule, proxyRes, context, { lines, eventStream: head.eventStream, writeHead }) : false;

  proxyRes.on('close', () => {
    if (proxyRes.complete) return;
    fail(new UpstreamUnreachableError('upstream closed the connection mid-response', { proxyStatus: 'connection_terminated', cause: proxyRes.errored ?? undefined }));
  });
  proxyRes.on('end', () => {
    // The upstream answered before it read the whole body: the rest is unwanted,
    // and the upstream connection, with a request half sent, is done.
    if (!proxyReq.writableFinished) {
      context.settleUnreadBody(req, res, exchange.arrival);
      proxyReq.destroy();
    }
    if (!transformed && !exchange.clientHeadWritten && writeHead(lines)) res.end();
  });

  if (transformed) return;

  if (head.eventStream) {
    if (!writeHead(lines)) return;
    res.flushHeaders();
    proxyRes.pipe(res);
    // Behind compression(), each event would wait in the compressor's buffer.
    const flush = (res as { flush?: () => void }).flush;
    if (typeof flush === 'function') proxyRes.on('data', () => flush.call(res));
    return;
  }
  proxyRes.once('data', (chunk: Buffer) => {
    if (!writeHead(lines)) return;
    res.write(chunk);
    proxyRes.pipe(res);
  });
}

/**
 * `103 Early Hints` go on to the client (HTTP/1.1 and later; RFC 9110 15.2
 * forbids 1xx to HTTP/1.0). Other interim responses stay with Node's client,
 * which waits for the final one; `100 Continue` was answered to the client by
 * Node already.
 */
export function relayEarlyHints(info: InformationEvent, req: IncomingMessage, res: ServerResponse): void {
  if (info.statusCode !== 103 || req.httpVersion === '1.0' || res.headersSent) return;
  const hints: Record<string, string[]> = {};
  for (let i = 0; i < info.rawHeaders.length; i += 2) {
    const lower = info.rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    (hints[lower] ??= []).push(info.rawHeaders[i + 1]!);
  }
  // Node sends no 103 without a Link; a hint is an optimisation, never worth an error.
  if (!hints.link) return;
  try {
    res.writeEarlyHints(hints);
  } catch {
    /* a hint the client side refuses is dropped */
  }
}
