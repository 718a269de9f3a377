import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * The cookie of `balance: { cookie }`. Its value names the upstream without
 * revealing it: an HMAC of the upstream's URL, keyed by `secret` (or by a
 * key made once per process, so instances that share no secret each set
 * their own cookie). A value that matches no upstream of the route, forged or
 * left from a changed route, is treated as absent.
 */
export interface StickyCookie {
  name: string;
  /** The cookie value that sends a client to `upstream`. */
  valueFor(upstream: URL): string;
}

let processSecret: Buffer | undefined;

export function createStickyCookie(name: string, secret: string | undefined): StickyCookie {
  const key = secret ?? (processSecret ??= randomBytes(32));
  // A route's upstreams are few and asked for on every request: each is hashed once.
  const values = new Map<string, string>();
  return {
    name,
    valueFor(upstream) {
      let value = values.get(upstream.href);
      if (value === undefined) {
        // 128 bits of the MAC: too many to forge, short enough for a cookie.
        value = createHmac('sha256', key).update(upstream.href).digest('base64url').slice(0, 22);
        if (values.size >= 1_000) values.clear();
        values.set(upstream.href, value);
      }
      return value;
    },
  };
}

// RFC 6265 path-value: any CHAR but CTLs and ';'.
const COOKIE_PATH = /^\/[\x20-\x3a\x3c-\x7e]*$/;

/** The value of the first `name` cookie in a Cookie header, if any. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * The Set-Cookie for a client sent to `upstream`: a session cookie, HttpOnly
 * (no page script needs it), SameSite=Lax, for the path the proxy is mounted
 * at (Express's `baseUrl`), Secure when the client came over https.
 */
export function stickyCookieHeader(cookie: StickyCookie, upstream: URL, req: IncomingMessage, secure: boolean): string {
  const mount = (req as { baseUrl?: string }).baseUrl;
  // A mount matched by a pattern could hold what a cookie attribute may not.
  const path = mount && COOKIE_PATH.test(mount) ? mount : '/';
  return `${cookie.name}=${cookie.valueFor(upstream)}; Path=${path}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}
