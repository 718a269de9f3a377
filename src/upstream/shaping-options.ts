import http, { type IncomingMessage } from 'node:http';
import { fail, isRecord, rejectUnknownKeys, show } from '../option-checks.ts';
import type { ProxyRequest } from '../routes/table.ts';

/**
 * Request shaping: what the upstream may and may not see of the client's
 * request. One definition and one validator for the proxy-wide options and a
 * route's own (`{ target, requestHeaders, removeCookies, removeQuery }`).
 */

/** The route a `requestHeaders.set` function is called for. */
export interface RouteInfo {
  /** The routing key: the Host the client sent, normalised (lower case, no port). */
  host: string;
  /** The route's upstream URLs (more than one when it balances). */
  targets: readonly string[];
}

/**
 * A header value computed per request, after the app's middleware ran (so
 * `req.user` from your auth is there). `undefined` removes the header: a name
 * in `set` is the proxy's to decide, never the client's.
 */
// The method form keeps the parameter bivariant: on a route, where `req` is
// declared as IncomingMessage, a function annotated with Express's `Request`
// (or any request type of your own) still fits.
export type HeaderValueFunction<Req extends IncomingMessage = ProxyRequest> = {
  compute(req: Req, route: RouteInfo): string | undefined | Promise<string | undefined>;
}['compute'];

export interface RequestHeadersOptions<Req extends IncomingMessage = ProxyRequest> {
  /** Header names the upstream never gets, whatever the client sends (any case, repeated, listed in Connection). */
  remove?: readonly string[];
  /** Header name -> the value the upstream gets instead of the client's, or a function of the request. */
  set?: Readonly<Record<string, string | HeaderValueFunction<Req>>>;
}

/** The shaping options, proxy-wide or on a route object. */
export interface RequestShapingOptions<Req extends IncomingMessage = ProxyRequest> {
  requestHeaders?: RequestHeadersOptions<Req>;
  /** Cookie names (exact) or patterns dropped from the Cookie header the upstream gets. */
  removeCookies?: ReadonlyArray<string | RegExp>;
  /** Query parameter names dropped from the request-target the upstream gets. */
  removeQuery?: readonly string[];
}

export interface ComputedHeader {
  name: string;
  compute: HeaderValueFunction<IncomingMessage>;
  /** Where it was configured, for the log record when it fails. */
  where: string;
}

export interface CookieMatcher {
  names: ReadonlySet<string>;
  patterns: readonly RegExp[];
}

/** The shaping options checked and compiled once: lower-case names, nothing left to decide per request but the functions. */
export interface RequestShaping {
  /** Lower-case header names the upstream never gets. */
  removeHeaders: readonly string[];
  /** Lower-case header name -> fixed value. */
  fixedHeaders: ReadonlyArray<readonly [string, string]>;
  computedHeaders: readonly ComputedHeader[];
  /** Every name `set` decides (fixed and computed): nothing the client sends may remove them. */
  setNames: ReadonlySet<string>;
  cookies: CookieMatcher | undefined;
  /** Decoded query parameter names. */
  query: ReadonlySet<string> | undefined;
  /** A route's shaping merged with the proxy-wide one, made on first use. */
  merged?: { base: RequestShaping; shaping: RequestShaping };
}

// RFC 9110 5.1: a field name is a token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// Fields the proxy decides itself: neither set nor removed by these options.
const RESERVED: ReadonlyMap<string, string> = new Map([
  ['host', 'the proxy routes by it (changeOrigin decides what the upstream gets)'],
  ['content-length', 'it frames the body, which the proxy does itself'],
  ['transfer-encoding', 'it frames the body, which the proxy does itself'],
  ['expect', 'Node answers it for the upstream, which never gets it'],
  ...['connection', 'upgrade', 'keep-alive', 'te', 'trailer', 'proxy-connection', 'proxy-authorization'].map(
    (name) => [name, 'it is hop-by-hop: it describes one connection, and the proxy speaks for its own'] as const,
  ),
]);

/** A header name an option may set or remove, lower-cased; `reserved` maps the names it may not to the reason. */
export function optionHeaderName(value: unknown, where: string, reserved: ReadonlyMap<string, string>): string {
  if (typeof value !== 'string' || !TOKEN.test(value)) fail(`${where} must be a header name; got ${show(value)}`);
  const lower = value.toLowerCase();
  const reason = reserved.get(lower);
  if (reason) fail(`${where}: ${JSON.stringify(value)} cannot be set or removed: ${reason}`);
  return lower;
}

function headerName(value: unknown, where: string): string {
  return optionHeaderName(value, where, RESERVED);
}

export function stringList(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) fail(`${where} must be an array; got ${show(value)}`);
  return value;
}

function compileHeaders(value: unknown, prefix: string): Pick<RequestShaping, 'removeHeaders' | 'fixedHeaders' | 'computedHeaders' | 'setNames'> {
  const where = `${prefix}requestHeaders`;
  if (!isRecord(value)) fail(`${where} must be an object { remove: [names], set: { name: value | (req, route) => value } }; got ${show(value)}`);
  rejectUnknownKeys(value, ['remove', 'set'], `${where}.`);
  const removeHeaders: string[] = [];
  if (value.remove !== undefined) {
    stringList(value.remove, `${where}.remove`).forEach((name, i) => {
      const lower = headerName(name, `${where}.remove[${i}]`);
      if (!removeHeaders.includes(lower)) removeHeaders.push(lower);
    });
  }
  const fixedHeaders: Array<readonly [string, string]> = [];
  const computedHeaders: ComputedHeader[] = [];
  const setNames = new Set<string>();
  if (value.set !== undefined) {
    if (!isRecord(value.set)) fail(`${where}.set must be an object { name: value | (req, route) => value }; got ${show(value.set)}`);
    for (const [name, headerValue] of Object.entries(value.set)) {
      const at = `${where}.set[${JSON.stringify(name)}]`;
      const lower = headerName(name, at);
      if (setNames.has(lower)) fail(`${at}: ${JSON.stringify(name)} is set twice (names are case-insensitive)`);
      if (removeHeaders.includes(lower)) fail(`${at}: ${JSON.stringify(name)} is both removed and set; set alone replaces what the client sent`);
      setNames.add(lower);
      if (typeof headerValue === 'function') {
        computedHeaders.push({ name: lower, compute: headerValue as HeaderValueFunction<IncomingMessage>, where: at });
        continue;
      }
      if (typeof headerValue !== 'string') fail(`${at} must be a string or a function (req, route) => string | undefined; got ${show(headerValue)}`);
      try {
        http.validateHeaderValue(lower, headerValue);
      } catch {
        // The value is left out of the message: it may well be a secret.
        fail(`${at} has a character Node refuses in a header value (CR, LF, NUL or another control character)`);
      }
      fixedHeaders.push([lower, headerValue]);
    }
  }
  return { removeHeaders, fixedHeaders, computedHeaders, setNames };
}

function compileCookies(value: unknown, prefix: string): CookieMatcher {
  const names = new Set<string>();
  const patterns: RegExp[] = [];
  stringList(value, `${prefix}removeCookies`).forEach((entry, i) => {
    const at = `${prefix}removeCookies[${i}]`;
    if (entry instanceof RegExp) {
      // A g or y pattern carries lastIndex from one test to the next, so it would match every other request.
      if (entry.global || entry.sticky) fail(`${at}: a RegExp with the g or y flag keeps state between tests; drop the flag`);
      patterns.push(entry);
      return;
    }
    if (typeof entry !== 'string' || !TOKEN.test(entry)) fail(`${at} must be a cookie name or a RegExp; got ${show(entry)}`);
    names.add(entry);
  });
  return { names, patterns };
}

function compileQuery(value: unknown, prefix: string): Set<string> {
  const names = new Set<string>();
  stringList(value, `${prefix}removeQuery`).forEach((entry, i) => {
    if (typeof entry !== 'string' || entry === '') fail(`${prefix}removeQuery[${i}] must be a query parameter name; got ${show(entry)}`);
    names.add(entry);
  });
  return names;
}

/**
 * Checks and compiles the shaping options; undefined when they shape nothing,
 * so an unset (or empty) option costs nothing per request. `where` is the
 * route they sit on (`routes["a.test"]`), or undefined for the proxy-wide ones.
 */
export function compileShaping(options: RequestShapingOptions<IncomingMessage>, where?: string): RequestShaping | undefined {
  const { requestHeaders, removeCookies, removeQuery } = options;
  if (requestHeaders === undefined && removeCookies === undefined && removeQuery === undefined) return undefined;
  const prefix = where === undefined ? '' : `${where}.`;
  const headers = requestHeaders === undefined ? undefined : compileHeaders(requestHeaders, prefix);
  const cookies = removeCookies === undefined ? undefined : compileCookies(removeCookies, prefix);
  const query = removeQuery === undefined ? undefined : compileQuery(removeQuery, prefix);
  const shaping: RequestShaping = {
    removeHeaders: headers?.removeHeaders ?? [],
    fixedHeaders: headers?.fixedHeaders ?? [],
    computedHeaders: headers?.computedHeaders ?? [],
    setNames: headers?.setNames ?? new Set(),
    cookies: cookies && cookies.names.size + cookies.patterns.length > 0 ? cookies : undefined,
    query: query && query.size > 0 ? query : undefined,
  };
  const shapesNothing = shaping.removeHeaders.length === 0 && shaping.setNames.size === 0 && !shaping.cookies && !shaping.query;
  return shapesNothing ? undefined : shaping;
}

/**
 * A route's shaping on top of the proxy-wide one: removals are unioned, and
 * by name the route's own has the last word (its `set` gives a value to a
 * header the proxy removes, as a set name always does; its `remove` drops
 * one the proxy sets). Cookies and query names are unioned.
 */
function merge(base: RequestShaping, own: RequestShaping): RequestShaping {
  const removeHeaders = [...base.removeHeaders, ...own.removeHeaders.filter((name) => !base.removeHeaders.includes(name))];
  const dropped = (name: string) => own.removeHeaders.includes(name) || own.setNames.has(name);
  const fixedHeaders = [...base.fixedHeaders.filter(([name]) => !dropped(name)), ...own.fixedHeaders];
  const computedHeaders = [...base.computedHeaders.filter(({ name }) => !dropped(name)), ...own.computedHeaders];
  const setNames = new Set([...fixedHeaders.map(([name]) => name), ...computedHeaders.map(({ name }) => name)]);
  const cookies =
    base.cookies && own.cookies
      ? { names: new Set([...base.cookies.names, ...own.cookies.names]), patterns: [...base.cookies.patterns, ...own.cookies.patterns] }
      : (base.cookies ?? own.cookies);
  const query = base.query && own.query ? new Set([...base.query, ...own.query]) : (base.query ?? own.query);
  return { removeHeaders, fixedHeaders, computedHeaders, setNames, cookies, query };
}

/**
 * The shaping for a route that has its own. The merge is made once per
 * route and proxy (a record's routes are compiled once); a route function's
 * result is compiled anew each time, and so merged each time.
 */
export function routeShaping(own: RequestShaping, base: RequestShaping | undefined): RequestShaping {
  if (base === undefined) return own;
  if (own.merged?.base !== base) own.merged = { base, shaping: merge(base, own) };
  return own.merged.shaping;
}
