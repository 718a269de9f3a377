import type { IncomingMessage } from 'node:http';
import { BadRequestError, MissingHostError } from '../errors.ts';
import { normalizeHost } from '../routes/host.ts';

/** Where a request goes, read once from the request and never written back into it. */
export interface RequestTarget {
  /** The routing key: the Host (or the absolute-form authority), normalised. */
  host: string;
  /** What the upstream is sent as request-target: origin-form (`/p?q`), or `*` for `OPTIONS *`. */
  path: string;
}

// Field-name lengths, so the scan below compares strings only when one could match.
const HOST = 'host';
const CONTENT_LENGTH = 'content-length';
const TRANSFER_ENCODING = 'transfer-encoding';

function refuse(message: string): never {
  throw new BadRequestError(message);
}

/**
 * Node's parser already refuses most ambiguous framing (Content-Length with
 * Transfer-Encoding, two Content-Lengths or a listed one, a coding list that
 * does not end in a plain chunked, chunked twice on one line or two, obs-fold).
 * This refuses what Node 24 lets through: the parser keeps the first of two
 * Host lines, accepts Transfer-Encoding on HTTP/1.0 (RFC 9112 6.1 says such
 * framing is faulty), and reads two Transfer-Encoding lines that are not both
 * chunked (`gzip`, then `chunked`) as chunked. The coding-list check repeats
 * the parser's, in case it relents. The counts come from rawHeaders, the field
 * lines as sent.
 */
function checkFraming(req: IncomingMessage): void {
  const raw = req.rawHeaders;
  let hosts = 0;
  let lengths = 0;
  let encodings = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4) {
      if (name.toLowerCase() === HOST) hosts++;
    } else if (name.length === 14) {
      if (name.toLowerCase() === CONTENT_LENGTH) lengths++;
    } else if (name.length === 17) {
      if (name.toLowerCase() === TRANSFER_ENCODING) encodings++;
    }
  }
  if (hosts > 1) refuse('more than one Host field line');
  if (lengths > 1) refuse('more than one Content-Length field line');
  if (encodings === 0) return;
  if (lengths > 0) refuse('both Content-Length and Transfer-Encoding');
  if (encodings > 1) refuse('more than one Transfer-Encoding field line');
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) refuse('Transfer-Encoding on an HTTP/1.0 request');
  const codings = String(req.headers['transfer-encoding']).toLowerCase().split(',');
  const chunked = codings.filter((coding) => coding.trim() === 'chunked').length;
  if (chunked !== 1 || codings[codings.length - 1]!.trim() !== 'chunked') refuse('Transfer-Encoding that does not end in a single chunked');
}

const ABSOLUTE_FORM = /^https?:\/\//i;

/**
 * Reads the request-target. Origin-form goes on as it is; absolute-form
 * (`GET http://a.test/p?q`) goes on in origin-form, and its authority must be
 * the Host (RFC 9112 3.2.2), so that what routes and what is forwarded cannot
 * differ; `OPTIONS *` goes on as `*`. Anything else is not a request a proxy
 * of origin servers can forward.
 */
function readPath(req: IncomingMessage, hostHeader: string): string {
  const url = req.url ?? '';
  if (url.startsWith('/')) return url;
  if (url === '*') {
    if (req.method !== 'OPTIONS') refuse('asterisk-form request-target on a method other than OPTIONS');
    return '*';
  }
  if (!ABSOLUTE_FORM.test(url)) refuse('request-target is neither origin-form nor absolute-form');
  const authorityStart = url.indexOf('//') + 2;
  let authorityEnd = authorityStart;
  while (authorityEnd < url.length && url[authorityEnd] !== '/' && url[authorityEnd] !== '?') authorityEnd++;
  const authority = url.slice(authorityStart, authorityEnd);
  if (authority.includes('@')) refuse('userinfo in the request-target');
  if (authority.toLowerCase() !== hostHeader.toLowerCase()) refuse('Host disagrees with the absolute-form request-target');
  const rest = url.slice(authorityEnd);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/**
 * The first stage of every request: framing that could be read two ways is
 * refused (400, connection closed) before anything else looks at the request.
 */
export function readRequestTarget(req: IncomingMessage): RequestTarget {
  checkFraming(req);
  const hostHeader = req.headers.host;
  const host = normalizeHost(hostHeader);
  if (!host) throw new MissingHostError(hostHeader ? { cause: 'invalid Host header' } : undefined);
  return { host, path: readPath(req, hostHeader!) };
}
