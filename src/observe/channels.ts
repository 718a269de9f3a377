import diagnostics from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ProxyError } from '../errors.ts';

/**
 * `node:diagnostics_channel` events, so a tracer (OpenTelemetry or any other)
 * can follow the proxy without a dependency. Publishing costs nothing while
 * nobody subscribes. Payloads are documented in docs/observability.md.
 */
export const channels = {
  requestStart: diagnostics.channel('honest-proxy:request:start'),
  response: diagnostics.channel('honest-proxy:response'),
  error: diagnostics.channel('honest-proxy:error'),
  webSocketOpen: diagnostics.channel('honest-proxy:websocket:open'),
  webSocketClose: diagnostics.channel('honest-proxy:websocket:close'),
};

export interface RequestStartMessage {
  req: IncomingMessage;
  requestId: string | undefined;
}
export interface ResponseMessage {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string | undefined;
  statusCode: number;
  /** The ProxyError code, `upstream` for a response the upstream made, `client_closed` when the client left first. */
  code: string;
  durationMs: number;
}
export interface ErrorMessage {
  req: IncomingMessage;
  requestId: string | undefined;
  error: ProxyError;
}
export interface WebSocketMessage {
  req: IncomingMessage;
  requestId: string | undefined;
  socket: Duplex;
  upstream: string | undefined;
}
