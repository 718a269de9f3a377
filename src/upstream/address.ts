/**
 * A route's upstreams are URLs: an `http:` or `https:` origin (with a path to
 * prepend), or `unix:` for a unix domain socket, whose path is the socket
 * file's, never part of a request path. Whatever needs to know where an
 * upstream is, or what to call it, asks here.
 */

/** The upstream reached through the socket file at `socketPath`, which must be absolute. */
export function unixUpstream(socketPath: string): URL {
  const url = new URL('unix:/');
  // The setter escapes `?`, `#` and spaces but not `%`: escaping that first makes the path come back exactly.
  url.pathname = socketPath.replaceAll('%', '%25');
  return url;
}

/** The socket file of a `unix:` upstream, else undefined. */
export function socketPathOf(upstream: URL): string | undefined {
  return upstream.protocol === 'unix:' ? decodeURIComponent(upstream.pathname) : undefined;
}

/**
 * What the proxy knows an upstream by in its passive health, its logs and
 * its metrics: the origin (`http://10.0.0.5:3000`), or `unix:/run/app.sock`
 * for a socket, whose URL origin is the same `"null"` for every socket.
 */
export function upstreamId(upstream: URL): string {
  return upstream.protocol === 'unix:' ? upstream.href : upstream.origin;
}
