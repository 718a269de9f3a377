import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { fail, isRecord, rejectUnknownKeys, show } from '../option-checks.ts';
import type { ProxyRequest } from '../routes/table.ts';

/**
 * `transformResponse`: one definition and one validator for the proxy-wide
 * option and a route's own (`{ target, transformResponse }`), which replaces
 * the proxy-wide one for that route (`false` turns it off there).
 */

/** What `when` and `transform` are told about a response. */
export interface ResponseTransformContext<Req extends IncomingMessage = ProxyRequest> {
  /** The upstream's status code. */
  status: number;
  /** The upstream's response headers, names lower-case, as Node parsed them (Content-Encoding still the upstream's). */
  headers: IncomingHttpHeaders;
  req: Req;
}

// The method forms keep the parameter bivariant: on a route, where `req` is
// IncomingMessage, a function annotated with Express's `Request` still fits.
export interface TransformResponseOptions<Req extends IncomingMessage = ProxyRequest> {
  /** Decides, synchronously, whether this response is transformed; called only for responses that have a body to transform. */
  when(context: ResponseTransformContext<Req>): boolean;
  /** A fresh stream for this response: it reads the decoded body and writes what the client gets. */
  transform(context: ResponseTransformContext<Req>): Duplex;
}

/** The option checked once; `where` names it in log records. */
export interface TransformRule {
  when: (context: ResponseTransformContext<IncomingMessage>) => unknown;
  transform: (context: ResponseTransformContext<IncomingMessage>) => unknown;
  where: string;
}

const KEYS = ['when', 'transform'];

/**
 * Checks `transformResponse` (at `where`: `transformResponse` or
 * `routes["a.test"].transformResponse`). `undefined` when unset, `false` when
 * turned off, so the relay tests one property of the route and nothing more.
 */
export function compileTransform(value: unknown, where: string): TransformRule | false | undefined {
  if (value === undefined || value === false) return value;
  const expected = `${where} must be false or { when: ({ status, headers, req }) => boolean, transform: (context) => Transform }`;
  if (!isRecord(value)) fail(`${expected}; got ${show(value)}`);
  rejectUnknownKeys(value, KEYS, `${where}.`);
  for (const key of KEYS) {
    if (typeof value[key] !== 'function') fail(`${where}.${key} must be a function; got ${show(value[key])}`);
  }
  return { when: value.when as TransformRule['when'], transform: value.transform as TransformRule['transform'], where };
}
