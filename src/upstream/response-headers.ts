import http, { type IncomingMessage } from 'node:http';
import { InternalProxyError, ProxyError } from '../errors.ts';
import { fail, isRecord, rejectUnknownKeys, show } from '../option-checks.ts';
import type { ProxyRequest } from '../routes/table.ts';
import { withoutFields } from './head-lines.ts';
import { optionHeaderName, stringList } from './shaping-options.ts';

/**
 * `responseHeaders`: what the client gets of an upstream's response head,
 * besides what the upstream sent. Applied to upstream responses only; the
 * proxy's own error responses stay as docs/errors.md describes them.
 */

/** A header value computed from the upstream's response (its `statusCode` and `headers`) and the client's request. */
// The method form keeps the parameter bivariant, as for requestHeaders.set.
export type ResponseHeaderFunction<Req extends IncomingMessage = ProxyRequest> = {
  compute(upstreamResponse: IncomingMessage, req: Req): string | readonly string[] | undefined;
}['compute'];

export interface ResponseHeadersOptions<Req extends IncomingMessage = ProxyRequest> {
  /** Header names the client never gets from the upstream (`Server`, `X-Powered-By`, its own CORS headers). */
  remove?: readonly string[];
  /** Header name -> the value the client gets instead of the upstream's, or a function of the upstream's response. */
  set?: Readonly<Record<string, string | readonly string[] | ResponseHeaderFunction<Req>>>;
}

interface ComputedResponseHeader {
  name: string;
  compute: ResponseHeaderFunction<IncomingMessage>;
  where: string;
}

/** The option checked and compiled once. */
export interface ResponseShaping {
  /** Lower-case names dropped from the upstream's head: every removed and every set name. */
  dropped: ReadonlySet<string>;
  /** Name as configured -> its values. */
  fixed: ReadonlyArray<readonly [string, readonly string[]]>;
  computed: readonly ComputedResponseHeader[];
  /** A route's shaping merged with the proxy-wide one, made on first use. */
  merged?: { base: ResponseShaping; shaping: ResponseShaping };
}

// Framing and the connection are the proxy's to decide on its side.
const RESERVED: ReadonlyMap<string, string> = new Map([
  ['content-length', 'it frames the body, which the proxy does itself'],
  ['transfer-encoding', 'it frames the body, which the proxy does itself'],
  ...['connection', 'upgrade', 'keep-alive', 'te', 'trailer', 'proxy-connection'].map(
    (name) => [name, 'it is hop-by-hop: it describes one connection, and the proxy speaks for its own'] as const,
  ),
]);

function checkedValues(name: string, value: unknown): string[] | undefined {
  const values = typeof value === 'string' ? [value] : Array.isArray(value) && value.every((entry) => typeof entry === 'string') ? (value as string[]) : undefined;
  if (!values) return undefined;
  for (const entry of values) http.validateHeaderValue(name, entry);
  return values;
}

/** Checks and compiles the option; undefined when it changes nothing, so an unset one costs nothing per response. */
export function compileResponseHeaders(value: unknown, where: string): ResponseShaping | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value)) fail(`${where} must be an object { remove: [names], set: { name: value | (upstreamResponse, req) => value } }; got ${show(value)}`);
  rejectUnknownKeys(value, ['remove', 'set'], `${where}.`);
  const dropped = new Set<string>();
  const removed = new Set<string>();
  if (value.remove !== undefined) {
    stringList(value.remove, `${where}.remove`).forEach((name, i) => removed.add(optionHeaderName(name, `${where}.remove[${i}]`, RESERVED)));
  }
  const fixed: Array<readonly [string, readonly string[]]> = [];
  const computed: ComputedResponseHeader[] = [];
  const setNames = new Set<string>();
  if (value.set !== undefined) {
    if (!isRecord(value.set)) fail(`${where}.set must be an object { name: value | (upstreamResponse, req) => value }; got ${show(value.set)}`);
    for (const [name, headerValue] of Object.entries(value.set)) {
      const at = `${where}.set[${JSON.stringify(name)}]`;
      const lower = optionHeaderName(name, at, RESERVED);
      if (setNames.has(lower)) fail(`${at}: ${JSON.stringify(name)} is set twice (names are case-insensitive)`);
      if (removed.has(lower)) fail(`${at}: ${JSON.stringify(name)} is both removed and set; set alone replaces what the upstream sent`);
      setNames.add(lower);
      if (typeof headerValue === 'function') {
        computed.push({ name, compute: headerValue as ResponseHeaderFunction<IncomingMessage>, where: at });
        continue;
      }
      let values: string[] | undefined;
      try {
        values = checkedValues(lower, headerValue);
      } catch {
        fail(`${at} has a character Node refuses in a header value (CR, LF, NUL or another control character)`);
      }
      if (!values) fail(`${at} must be a string, an array of strings, or a function (upstreamResponse, req) => value; got ${show(headerValue)}`);
      fixed.push([name, values]);
    }
  }
  for (const name of [...removed, ...setNames]) dropped.add(name);
  return dropped.size === 0 ? undefined : { dropped, fixed, computed };
}

/**
 * A route's own on top of the proxy-wide one, as for requestHeaders: by
 * name, the route's has the last word (its `set` gives a value to a header
 * the proxy removes; its `remove` drops one the proxy sets).
 */
function merge(base: ResponseShaping, own: ResponseShaping): ResponseShaping {
  const overridden = (name: string) => own.dropped.has(name.toLowerCase());
  return {
    dropped: new Set([...base.dropped, ...own.dropped]),
    fixed: [...base.fixed.filter(([name]) => !overridden(name)), ...own.fixed],
    computed: [...base.computed.filter(({ name }) => !overridden(name)), ...own.computed],
  };
}

/** The shaping for a route: its own merged onto the proxy-wide one once per route, or whichever exists. */
export function responseShapingFor(own: ResponseShaping | undefined, base: ResponseShaping | undefined): ResponseShaping | undefined {
  if (own === undefined || base === undefined) return own ?? base;
  if (own.merged?.base !== base) own.merged = { base, shaping: merge(base, own) };
  return own.merged.shaping;
}

/**
 * The client's head lines with the shaping applied: the upstream's lines
 * for every dropped name taken out (any case, every repeat), then the set
 * values added. A set function that throws, or returns what Node refuses in
 * a header, is the proxy's fault, not the upstream's: a 500, logged.
 */
export function shapeResponseHead(lines: string[], shaping: ResponseShaping, upstreamResponse: IncomingMessage, req: IncomingMessage): string[] {
  const shaped = withoutFields(lines, shaping.dropped);
  for (const [name, values] of shaping.fixed) for (const value of values) shaped.push(name, value);
  for (const header of shaping.computed) {
    let values: string[] | undefined;
    try {
      const result = header.compute(upstreamResponse, req);
      if (result === undefined) continue;
      values = checkedValues(header.name, result);
    } catch (err) {
      throw err instanceof ProxyError ? err : new InternalProxyError(`${header.where} failed`, { cause: err });
    }
    if (!values) throw new InternalProxyError(`${header.where} returned neither a string, an array of strings nor undefined`);
    for (const value of values) shaped.push(header.name, value);
  }
  return shaped;
}
