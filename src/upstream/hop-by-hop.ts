// RFC 9110 7.6.1: fields that describe one connection, not the message, so a
// proxy must not pass them on (Go's ReverseProxy list). Proxy-Authorization is
// a credential for a proxy, not for the app. Transfer-Encoding is framing,
// which each side of the proxy does for itself.
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const NONE: readonly string[] = Object.freeze([]);

/** The field names a Connection header lists, lower case. */
export function connectionTokens(value: string | string[] | undefined): readonly string[] {
  if (value === undefined) return NONE;
  // The usual values (keep-alive, close) name no field: no list to build.
  if (typeof value === 'string' && value.length <= 10) {
    const lower = value.toLowerCase();
    if (lower === 'keep-alive' || lower === 'close') return NONE;
  }
  const names: string[] = [];
  for (const token of String(value).split(',')) {
    const name = token.trim().toLowerCase();
    if (name) names.push(name);
  }
  return names;
}
