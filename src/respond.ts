import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ProxyError } from './errors.ts';

/** Renders a ProxyError body. It gets the error, never the upstream's detail. */
export type ErrorRenderer = (error: ProxyError, req: IncomingMessage) => { contentType: string; body: string | Buffer };

export type ErrorFormat = 'text' | 'json' | ErrorRenderer;

export interface ErrorResponse {
  statusCode: number;
  statusText: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface ResponseSettings {
  errorFormat: ErrorFormat;
  /** RFC 9209 proxy name for `Proxy-Status`, or false for no header. */
  proxyStatusName: string | false;
  requestIdHeader: string | false;
}

const HEADER_VALUE = /^[\t\x20-\x7e]+$/;

const renderText: ErrorRenderer = (error) => ({ contentType: 'text/plain; charset=utf-8', body: error.statusText });

// The JSON shape of a common API error format: {statusCode, message, error}.
// `error` is the class's fixed description, never a cause's message.
const renderJson: ErrorRenderer = (error) => {
  const payload: Record<string, unknown> = { statusCode: error.statusCode, message: error.statusText, error: error.description };
  const retryAfter = Number(error.headers['retry-after']);
  if (Number.isInteger(retryAfter)) payload.retryAfter = retryAfter;
  return { contentType: 'application/json; charset=utf-8', body: JSON.stringify(payload) };
};

export function rendererFor(format: ErrorFormat): ErrorRenderer {
  if (format === 'text') return renderText;
  if (format === 'json') return renderJson;
  return format;
}

/**
 * Everything the client will see for a proxy failure. A custom renderer that
 * throws falls back to text: an error page must never become a second error.
 */
export function buildErrorResponse(error: ProxyError, req: IncomingMessage, settings: ResponseSettings, requestId: string | undefined): ErrorResponse {
  let rendered: { contentType: string; body: string | Buffer };
  try {
    rendered = rendererFor(settings.errorFormat)(error, req);
    // A content type Node would refuse (CR, LF...) would throw in writeHead,
    // inside an event handler: treated like a renderer that threw.
    if (typeof rendered?.contentType !== 'string' || !HEADER_VALUE.test(rendered.contentType)) rendered = renderText(error, req);
  } catch {
    rendered = renderText(error, req);
  }
  const body = Buffer.isBuffer(rendered.body) ? rendered.body : Buffer.from(String(rendered.body), 'utf8');
  const headers: Record<string, string> = {
    ...error.headers,
    'content-type': rendered.contentType,
    'content-length': String(body.length),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  };
  if (settings.proxyStatusName !== false) headers['proxy-status'] = `${settings.proxyStatusName}; error=${error.proxyStatus}`;
  if (settings.requestIdHeader !== false && requestId !== undefined) headers[settings.requestIdHeader] = requestId;
  return { statusCode: error.statusCode, statusText: error.statusText, headers, body };
}

export function sendErrorResponse(res: ServerResponse, response: ErrorResponse): void {
  // Express adds X-Powered-By before any middleware runs; an error page names no software.
  res.removeHeader('x-powered-by');
  // The reason phrase too: a writeHead that threw on an upstream's head has left that head's phrase on `res`.
  res.writeHead(response.statusCode, response.statusText, response.headers);
  res.end(response.body);
}

/** For a failed WebSocket upgrade: a real HTTP response on the raw socket, then close. */
export function writeErrorResponseToSocket(socket: Duplex, response: ErrorResponse): void {
  if (socket.destroyed || !socket.writable) return;
  let head = `HTTP/1.1 ${response.statusCode} ${response.statusText}\r\n`;
  for (const [name, value] of Object.entries(response.headers)) if (name !== 'connection') head += `${name}: ${value}\r\n`;
  head += 'connection: close\r\n\r\n';
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), response.body]));
}

/**
 * For `onError: 'next'`: the error as Express's error handler (and the
 * http-errors convention) reads it, `status` and `expose` from the class, and
 * `headers` the ones the proxy would have sent, less those the handler writes
 * for its own body.
 */
export function withResponseHeaders(error: ProxyError, response: ErrorResponse): ProxyError {
  const { 'content-type': _type, 'content-length': _length, ...headers } = response.headers;
  Object.defineProperty(error, 'headers', { value: Object.freeze(headers), enumerable: true, configurable: true });
  return error;
}
