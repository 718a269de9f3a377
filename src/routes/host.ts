// A DNS name (letters, digits, hyphens, underscores, dots) or a bracketed IPv6
// literal, with an optional port. Anything else is not a Host we can route.
const HOST_PATTERN = /^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * The routing key of a Host header value: lower case, without port and without
 * a trailing dot. `undefined` when the value is empty or not a valid host.
 */
export function normalizeHost(value: string | undefined): string | undefined {
  if (!value || value.length > 255 || !HOST_PATTERN.test(value)) return undefined;
  let host = value.toLowerCase();
  const portStart = host.lastIndexOf(':');
  if (portStart !== -1 && !host.endsWith(']')) host = host.slice(0, portStart);
  if (host.endsWith('.')) host = host.slice(0, -1);
  return host || undefined;
}
