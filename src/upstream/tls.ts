import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { LRUCache } from 'lru-cache';
import { fail, isRecord, rejectUnknownKeys, show } from '../option-checks.ts';

type Pem = string | Buffer;

/** How the proxy speaks TLS to `https:` upstreams (and `wss:` through them), proxy-wide or for one route. */
export interface UpstreamTlsOptions {
  /** PEM certificates to trust instead of Node's bundled roots: a private CA, or a self-signed upstream's own certificate. */
  ca?: Pem | readonly Pem[];
  /** The proxy's client certificate (PEM), for an upstream that requires one (mutual TLS). Needs `key`. */
  cert?: Pem | readonly Pem[];
  /** The private key of `cert` (PEM). */
  key?: Pem | readonly Pem[];
  /** Decrypts `key`. */
  passphrase?: string;
  /** The name sent in SNI and checked against the upstream's certificate. Default: the Host the upstream gets. */
  servername?: string;
  /** `false` accepts any certificate, for this setting only. Default true. */
  rejectUnauthorized?: boolean;
}

/** A TLS setting checked once and ready for Node's tls.connect. */
export interface TlsSettings {
  /** Equal for equal settings (a digest: no key material in it): one keep-alive pool per key. */
  readonly key: string;
  /** For tls.connect: the context is built once, not on every connection. */
  readonly connect: Readonly<{ secureContext: SecureContext; servername?: string }>;
  readonly rejectUnauthorized: boolean;
}

const TLS_NAMES = ['ca', 'cert', 'key', 'passphrase', 'servername', 'rejectUnauthorized'] as const satisfies ReadonlyArray<keyof UpstreamTlsOptions>;

// A route function may return a new tls object per request: the same object is
// read once, and the same contents get the same settings without a new
// secure context (whose CA parsing costs milliseconds).
const byObject = new WeakMap<object, TlsSettings>();
const byContents = new LRUCache<string, TlsSettings>({ max: 256 });

function pems(value: unknown, name: string): Pem[] | undefined {
  if (value === undefined) return undefined;
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || !list.every((entry) => typeof entry === 'string' || Buffer.isBuffer(entry))) {
    fail(`${name} must be a PEM string or Buffer, or an array of them; got ${show(value)}`);
  }
  return list as Pem[];
}

function digest(fields: Record<string, unknown>): string {
  const hash = createHash('sha256');
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    hash.update(`${name}\0`);
    for (const entry of Array.isArray(value) ? value : [value]) hash.update(Buffer.isBuffer(entry) ? entry : `${typeof entry}:${String(entry)}`).update('\0');
  }
  return hash.digest('base64url');
}

/** Checks a `tls` option (`where` names it) and builds its context; throws a ProxyOptionsError naming the field. */
export function parseTls(value: unknown, where: string): TlsSettings {
  if (!isRecord(value)) fail(`${where} must be an object { ${TLS_NAMES.join(', ')} }; got ${show(value)}`);
  const known = byObject.get(value);
  if (known) return known;
  rejectUnknownKeys(value, TLS_NAMES, `${where}.`);
  const options = value as UpstreamTlsOptions;
  const ca = pems(options.ca, `${where}.ca`);
  const cert = pems(options.cert, `${where}.cert`);
  const key = pems(options.key, `${where}.key`);
  const { passphrase, servername, rejectUnauthorized = true } = options;
  if ((cert === undefined) !== (key === undefined)) fail(`${where}.cert and ${where}.key go together: a client certificate needs its key`);
  if (passphrase !== undefined && typeof passphrase !== 'string') fail(`${where}.passphrase must be a string; got ${show(passphrase)}`);
  // RFC 6066: SNI names a host, never an address.
  if (servername !== undefined && (typeof servername !== 'string' || servername === '' || isIP(servername) !== 0)) {
    fail(`${where}.servername must be a host name (not an IP address); got ${show(servername)}`);
  }
  if (typeof rejectUnauthorized !== 'boolean') fail(`${where}.rejectUnauthorized must be true or false; got ${show(rejectUnauthorized)}`);

  const contents = digest({ ca, cert, key, passphrase, servername, rejectUnauthorized });
  let settings = byContents.get(contents);
  if (!settings) {
    let secureContext: SecureContext;
    try {
      secureContext = createSecureContext({ ca, cert, key, passphrase });
    } catch (err) {
      // A PEM that does not parse, a key that does not match, a wrong passphrase: now, not at the first request.
      fail(`${where}: ${(err as Error).message}`);
    }
    settings = { key: contents, connect: servername === undefined ? { secureContext } : { secureContext, servername }, rejectUnauthorized };
    byContents.set(contents, settings);
  }
  byObject.set(value, settings);
  return settings;
}
