// Which requests are previews, and of which sandbox. The proxy parses
// `{port}-{id}.{domain}` itself to route; the platform needs the same answer
// earlier (to send a request to the proxy at all) and elsewhere (the rate-limit
// key runs before the route lookup, so it cannot ask the proxy).

const LABEL = /^[1-9][0-9]{0,4}-([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/;

/** The Host header as the proxy compares it: lower case, no port, no trailing dot. */
function hostName(header: string | undefined): string | undefined {
  const host = header
    ?.trim()
    .toLowerCase()
    .replace(/:\d*$/, '')
    .replace(/\.$/, '');
  return host || undefined;
}

export function isPreviewHost(header: string | undefined, domain: string): boolean {
  return hostName(header)?.endsWith(`.${domain}`) ?? false;
}

/** `alpha` for `3000-alpha.preview.localhost`; undefined for a host that is not a preview. */
export function sandboxIdOf(header: string | undefined, domain: string): string | undefined {
  const host = hostName(header);
  if (!host?.endsWith(`.${domain}`)) return undefined;
  return LABEL.exec(host.slice(0, -domain.length - 1))?.[1];
}
