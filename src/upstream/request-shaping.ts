import { validateHeaderValue, type IncomingMessage } from 'node:http';
import { InternalProxyError, ProxyError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { UpstreamHeaderPlan } from './request-headers.ts';
import type { ComputedHeader, CookieMatcher, RequestShaping, RouteInfo } from './shaping-options.ts';

/**
 * The Cookie value without the cookies `matcher` names, or undefined when it
 * names none of them. Every other cookie stays byte for byte and in order,
 * with the separator the client put before it; '' when none is left. Node
 * has already joined several Cookie lines into one, with '; '.
 */
export function withoutCookies(header: string, matcher: CookieMatcher): string | undefined {
  const parts = header.split(';');
  const kept: string[] = [];
  for (const part of parts) {
    const equals = part.indexOf('=');
    // A pair without '=' is a nameless cookie (browsers send `value` for `=value`).
    const name = equals === -1 ? '' : part.slice(0, equals).trim();
    if (matcher.names.has(name) || matcher.patterns.some((pattern) => pattern.test(name))) continue;
    kept.push(part);
  }
  if (kept.length === parts.length) return undefined;
  if (kept.every((part) => part.trim() === '')) return '';
  // The space that followed a removed first cookie's ';' is not part of the next one.
  return kept.join(';').replace(/^[ \t]+/, '');
}

/** A query name as a query parser reads it (`+` is a space, %XX decoded), so `tok%65n` is `token`. */
function decodedName(raw: string): string {
  if (!raw.includes('%') && !raw.includes('+')) return raw;
  const spaced = raw.replaceAll('+', ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/**
 * The request-target without the named query parameters (every occurrence,
 * with or without `=`), or undefined when it has none of them. The rest is
 * kept as sent: not decoded, not re-encoded, in order; the `?` goes when
 * nothing is left after it.
 */
export function withoutQueryParams(path: string, names: ReadonlySet<string>): string | undefined {
  const start = path.indexOf('?');
  if (start === -1) return undefined;
  const params = path.slice(start + 1).split('&');
  const kept: string[] = [];
  for (const param of params) {
    const equals = param.indexOf('=');
    if (names.has(decodedName(equals === -1 ? param : param.slice(0, equals)))) continue;
    kept.push(param);
  }
  if (kept.length === params.length) return undefined;
  const query = kept.join('&');
  return query === '' ? path.slice(0, start) : `${path.slice(0, start + 1)}${query}`;
}

function remove(plan: UpstreamHeaderPlan, name: string): void {
  if (name in plan.set) delete plan.set[name];
  if (!plan.remove.includes(name)) plan.remove.push(name);
}

function headerFailure(header: ComputedHeader, what: string, cause: unknown): InternalProxyError {
  return new InternalProxyError(`${header.where} ${what}`, { cause });
}

/** As with a route resolver, a ProxyError a function throws is the answer it chose; anything else is a 500. */
function thrown(header: ComputedHeader, err: unknown): ProxyError {
  return err instanceof ProxyError ? err : headerFailure(header, 'threw', err);
}

/**
 * One computed value, checked as Node will check it when the upstream
 * request is built: a value Node refuses would otherwise throw inside the
 * engine, after the route was taken. The value itself is never logged.
 */
function checkedValue(header: ComputedHeader, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw headerFailure(header, `returned ${value === null ? 'null' : `a ${typeof value}`}; expected a string or undefined`, undefined);
  try {
    validateHeaderValue(header.name, value);
  } catch (err) {
    throw headerFailure(header, 'returned a value Node refuses as a header value', err);
  }
  return value;
}

function applyComputed(plan: UpstreamHeaderPlan, computed: readonly ComputedHeader[], values: readonly unknown[]): void {
  computed.forEach((header, i) => {
    const value = checkedValue(header, values[i]);
    if (value === undefined) remove(plan, header.name);
    else plan.set[header.name] = value;
  });
}

function isThenable(value: unknown): boolean {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

function computeAll(req: IncomingMessage, exchange: Exchange, computed: readonly ComputedHeader[]): unknown[] {
  const route: RouteInfo = { host: exchange.target!.host, targets: exchange.route!.targets.map((url) => url.href) };
  const values: unknown[] = [];
  for (const header of computed) {
    try {
      values.push(header.compute(req, route));
    } catch (err) {
      // An earlier function's promise that rejects later, with nobody left to hear it, would take the process down.
      for (const value of values) if (isThenable(value)) Promise.resolve(value).catch(() => {});
      throw thrown(header, err);
    }
  }
  return values;
}

/**
 * Applies the shaping to what goes upstream, after the app's middleware and
 * the header plan: the request-target without the removed query parameters,
 * the Cookie header without the removed cookies, then `requestHeaders`,
 * which has the last word over every header but the framing and routing ones
 * (the forwarding headers and the request id included). `req` is never
 * edited. A promise only when a `set` function returned one.
 */
export function shapeRequest(req: IncomingMessage, exchange: Exchange, shaping: RequestShaping): Promise<void> | undefined {
  const plan = exchange.headerPlan!;
  if (shaping.query) {
    const path = withoutQueryParams(exchange.target!.path, shaping.query);
    if (path !== undefined) exchange.target!.path = path;
  }
  const cookie = req.headers.cookie;
  if (shaping.cookies && cookie !== undefined) {
    const kept = withoutCookies(cookie, shaping.cookies);
    if (kept === '') remove(plan, 'cookie');
    else if (kept !== undefined) plan.set.cookie = kept;
  }
  for (const name of shaping.removeHeaders) remove(plan, name);
  for (const [name, value] of shaping.fixedHeaders) plan.set[name] = value;
  if (shaping.setNames.size > 0) {
    // A client's `Connection: <name>` put it on the removal list, which would take the value set here away again.
    plan.remove = plan.remove.filter((name) => !shaping.setNames.has(name));
  }
  if (shaping.computedHeaders.length === 0) return undefined;
  const { computedHeaders } = shaping;
  const values = computeAll(req, exchange, computedHeaders);
  if (!values.some(isThenable)) {
    applyComputed(plan, computedHeaders, values);
    return undefined;
  }
  const settled = values.map((value, i) => Promise.resolve(value).catch((err: unknown) => Promise.reject(thrown(computedHeaders[i]!, err))));
  return Promise.all(settled).then((results) => applyComputed(plan, computedHeaders, results));
}
