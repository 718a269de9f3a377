import { types } from 'node:util';
import {
  InternalProxyError,
  ProxyError,
  UpstreamProtocolError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
  type ProxyStatusErrorType,
} from './errors.ts';

type Classification = { kind: 'unreachable' | 'timeout'; proxyStatus: ProxyStatusErrorType };

const BY_CODE: Record<string, Classification> = {
  ECONNREFUSED: { kind: 'unreachable', proxyStatus: 'connection_refused' },
  ENOTFOUND: { kind: 'unreachable', proxyStatus: 'dns_error' },
  // A unix socket file that does not exist: there is nothing at that address.
  ENOENT: { kind: 'unreachable', proxyStatus: 'destination_not_found' },
  EAI_AGAIN: { kind: 'unreachable', proxyStatus: 'dns_error' },
  EAI_FAIL: { kind: 'unreachable', proxyStatus: 'dns_error' },
  EAI_NONAME: { kind: 'unreachable', proxyStatus: 'dns_error' },
  EHOSTUNREACH: { kind: 'unreachable', proxyStatus: 'destination_unavailable' },
  ENETUNREACH: { kind: 'unreachable', proxyStatus: 'destination_unavailable' },
  EHOSTDOWN: { kind: 'unreachable', proxyStatus: 'destination_unavailable' },
  EADDRNOTAVAIL: { kind: 'unreachable', proxyStatus: 'destination_unavailable' },
  ECONNRESET: { kind: 'unreachable', proxyStatus: 'connection_terminated' },
  EPIPE: { kind: 'unreachable', proxyStatus: 'connection_terminated' },
  ECONNABORTED: { kind: 'unreachable', proxyStatus: 'connection_terminated' },
  ERR_STREAM_PREMATURE_CLOSE: { kind: 'unreachable', proxyStatus: 'connection_terminated' },
  // The kernel's own connect timeout, which can fire before ours does.
  ETIMEDOUT: { kind: 'timeout', proxyStatus: 'connection_timeout' },
};

// OpenSSL's verify results that Node passes on as the error code and that
// name no CERT_ of their own: the upstream's certificate did not verify.
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'HOSTNAME_MISMATCH',
]);

// The upstream's alert refusing the proxy's client certificate (or its
// absence): TLS 1.3's certificate_required, bad_certificate, unknown_ca...
// A certificate problem too, the proxy's side of the mutual TLS.
const CERTIFICATE_ALERT = /^ERR_SSL_\w*ALERT_(\w*CERTIFICATE\w*|UNKNOWN_CA)$/;

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Maps a failure of the upstream exchange (a Node `net`/`http`/`tls` error, as
 * httpxy reports it) to the ProxyError a client should see.
 *
 * Anything already a ProxyError is returned as is. Transport failures are 502
 * (Go's ReverseProxy rule), timeouts 504. A code we do not know is most likely
 * a fault on our side (an invalid header value, say), so it is a 500 rather than
 * a guess that blames the upstream.
 */
export function classifyUpstreamError(err: unknown): ProxyError {
  if (err instanceof ProxyError) return err;
  const code = errorCode(err);
  const detail = `upstream request failed: ${code ?? (types.isNativeError(err) || err instanceof Error ? err.message : String(err))}`;

  const known = code === undefined ? undefined : BY_CODE[code];
  if (known?.kind === 'timeout') return new UpstreamTimeoutError(detail, { proxyStatus: known.proxyStatus, cause: err });
  if (known) return new UpstreamUnreachableError(detail, { proxyStatus: known.proxyStatus, cause: err });

  // llhttp parse failures: the upstream spoke something that is not HTTP/1.1.
  if (code?.startsWith('HPE_')) return new UpstreamProtocolError(detail, { cause: err });
  if (code !== undefined && (code.startsWith('ERR_TLS_CERT') || code.includes('CERT_') || CERTIFICATE_CODES.has(code) || CERTIFICATE_ALERT.test(code))) {
    return new UpstreamUnreachableError(detail, { proxyStatus: 'tls_certificate_error', cause: err });
  }
  if (code?.startsWith('ERR_SSL') || code?.startsWith('ERR_TLS')) {
    return new UpstreamUnreachableError(detail, { proxyStatus: 'tls_protocol_error', cause: err });
  }
  return new InternalProxyError(detail, { cause: err });
}
