import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';

/** Who may speak for the client: Express's `trust proxy` forms. */
export type TrustProxy = boolean | number | string | string[] | ((address: string, hop: number) => boolean);
export type TrustFunction = (address: string, hop: number) => boolean;

/** Which forwarding headers the upstream gets: de-facto X-Forwarded-*, RFC 7239 `Forwarded`, both, or none. */
export type ForwardedMode = 'x-forwarded' | 'rfc7239' | 'both' | false;

const TRUST_NOBODY: TrustFunction = () => false;

/** The same rule Express applies to its `trust proxy` setting, so `req.ip` and ours agree. */
export function compileTrust(value: TrustProxy): TrustFunction {
  if (typeof value === 'function') return value;
  if (value === true) return () => true;
  if (value === false) return TRUST_NOBODY;
  if (typeof value === 'number') return (_address, hop) => hop < value;
  const list = typeof value === 'string' ? value.split(',').map((entry) => entry.trim()) : value;
  return proxyaddr.compile(list);
}

/**
 * The trust rule for one request: the `trustProxy` option when given, else
 * the Express app's own `trust proxy` (the rule behind `req.ip`), else nobody.
 */
export function trustFor(req: IncomingMessage, option: TrustFunction | undefined): TrustFunction {
  if (option) return option;
  const app = (req as { app?: { get?: (name: string) => unknown } }).app;
  const fromApp = typeof app?.get === 'function' ? app.get('trust proxy fn') : undefined;
  return typeof fromApp === 'function' ? (fromApp as TrustFunction) : TRUST_NOBODY;
}

/** The client's address: the peer's, or, through trusted proxies, the one they forwarded. */
export function clientAddress(req: IncomingMessage, trust: TrustFunction): string {
  const peer = req.socket.remoteAddress ?? '';
  // proxy-addr's own first step, without parsing X-Forwarded-For for nothing.
  if (!trust(peer, 0)) return peer;
  return proxyaddr(req, trust);
}

export interface ForwardedSettings {
  mode: ForwardedMode;
  trust: TrustFunction;
  /** A pseudonym for `Via`, or false for none. */
  via: string | false;
}

export interface ForwardedFields {
  set: Record<string, string>;
  remove: string[];
}

/** The scheme this hop was reached by. */
function schemeOf(req: IncomingMessage): string {
  return (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
}

function defaultPort(proto: string): string {
  return proto === 'https' ? '443' : '80';
}

function portOf(host: string, proto: string): string {
  const match = /:(\d+)$/.exec(host);
  return match ? match[1]! : defaultPort(proto);
}

// RFC 7239 4: an IPv6 node is bracketed, and then the value must be quoted.
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address;
}

function forwardedValue(value: string): string {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`;
}

/**
 * What the upstream learns about the client (Caddy's and Traefik's default).
 * From an untrusted peer every incoming X-Forwarded-* and Forwarded field is
 * dropped, so a client cannot claim another address, host or scheme; from a
 * trusted one they are kept and this hop is appended. `Via` is appended to,
 * never replaced.
 */
export function forwardedFields(req: IncomingMessage, settings: ForwardedSettings): ForwardedFields {
  const headers = req.headers;
  const peer = req.socket.remoteAddress ?? '';
  const trusted = settings.trust(peer, 0);
  const set: Record<string, string> = {};
  const remove: string[] = [];
  if (!trusted) {
    for (const name in headers) if (name.startsWith('x-forwarded-') || name === 'forwarded') remove.push(name);
  }
  const proto = schemeOf(req);
  const host = headers.host ?? '';
  const kept = (name: string): string | undefined => {
    const value = headers[name];
    return trusted && typeof value === 'string' && value !== '' ? value : undefined;
  };

  if (settings.mode === 'x-forwarded' || settings.mode === 'both') {
    const chain = kept('x-forwarded-for');
    set['x-forwarded-for'] = chain ? `${chain}, ${peer}` : peer;
    set['x-forwarded-proto'] = kept('x-forwarded-proto') ?? proto;
    set['x-forwarded-host'] = kept('x-forwarded-host') ?? host;
    set['x-forwarded-port'] = kept('x-forwarded-port') ?? portOf(host, proto);
  }
  if (settings.mode === 'rfc7239' || settings.mode === 'both') {
    const element = `for=${forwardedNode(peer)};host=${forwardedValue(host)};proto=${proto}`;
    const chain = kept('forwarded');
    set.forwarded = chain ? `${chain}, ${element}` : element;
  }
  if (settings.via !== false) {
    const hop = `${req.httpVersion} ${settings.via}`;
    const chain = headers.via;
    set.via = typeof chain === 'string' && chain !== '' ? `${chain}, ${hop}` : hop;
  }
  // What is set replaces the copy, so it need not be removed too.
  return { set, remove: remove.filter((name) => !(name in set)) };
}

/** The first value of a forwarded header, when the peer is trusted to send it. */
function trustedFirst(req: IncomingMessage, trusted: boolean, name: string): string | undefined {
  const value = trusted ? req.headers[name] : undefined;
  return typeof value === 'string' && value ? value.split(',')[0]!.trim() : undefined;
}

function peerTrusted(req: IncomingMessage, trust: TrustFunction): boolean {
  return trust(req.socket.remoteAddress ?? '', 0);
}

function schemeFrom(req: IncomingMessage, trusted: boolean): string {
  return trustedFirst(req, trusted, 'x-forwarded-proto') ?? schemeOf(req);
}

/** The scheme the client used (`http`, `https`), as a trusted proxy in front reported it, else as this hop saw it. */
export function clientScheme(req: IncomingMessage, trust: TrustFunction): string {
  return schemeFrom(req, peerTrusted(req, trust));
}

/** The origin the client used, as a trusted proxy in front reported it, else as this hop saw it. */
export function clientOrigin(req: IncomingMessage, trust: TrustFunction): string {
  const trusted = peerTrusted(req, trust);
  return `${schemeFrom(req, trusted)}://${trustedFirst(req, trusted, 'x-forwarded-host') ?? req.headers.host ?? ''}`;
}
