import {
  classifyUpstreamError,
  InternalProxyError,
  RateLimitedError,
  UpstreamProtocolError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from '../src/index.ts';

// Errors shaped as Node raises them (code on an Error). The integration suite
// produces the common ones for real; these cover codes a loopback test cannot.
function nodeError(code: string): Error {
  return Object.assign(new Error(`${code} something`), { code });
}

describe('classifyUpstreamError', () => {
  it.each([
    ['ECONNREFUSED', UpstreamUnreachableError, 'connection_refused'],
    ['ENOTFOUND', UpstreamUnreachableError, 'dns_error'],
    ['EAI_AGAIN', UpstreamUnreachableError, 'dns_error'],
    ['EHOSTUNREACH', UpstreamUnreachableError, 'destination_unavailable'],
    ['ECONNRESET', UpstreamUnreachableError, 'connection_terminated'],
    ['EPIPE', UpstreamUnreachableError, 'connection_terminated'],
    ['HPE_INVALID_CONSTANT', UpstreamProtocolError, 'http_protocol_error'],
    ['HPE_INVALID_STATUS', UpstreamProtocolError, 'http_protocol_error'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', UpstreamUnreachableError, 'tls_certificate_error'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', UpstreamUnreachableError, 'tls_certificate_error'],
    ['SELF_SIGNED_CERT_IN_CHAIN', UpstreamUnreachableError, 'tls_certificate_error'],
    ['CERT_HAS_EXPIRED', UpstreamUnreachableError, 'tls_certificate_error'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', UpstreamUnreachableError, 'tls_certificate_error'],
    // The upstream refused the proxy's client certificate, or its absence.
    ['ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', UpstreamUnreachableError, 'tls_certificate_error'],
    ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', UpstreamUnreachableError, 'tls_certificate_error'],
    ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', UpstreamUnreachableError, 'tls_certificate_error'],
    ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', UpstreamUnreachableError, 'tls_protocol_error'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', UpstreamUnreachableError, 'tls_protocol_error'],
    ['ETIMEDOUT', UpstreamTimeoutError, 'connection_timeout'],
    ['ERR_INVALID_CHAR', InternalProxyError, 'proxy_internal_error'],
  ] as const)('%s -> %p %s', (code, type, proxyStatus) => {
    const cause = nodeError(code);
    const error = classifyUpstreamError(cause);
    expect(error).toBeInstanceOf(type);
    expect(error.proxyStatus).toBe(proxyStatus);
    expect(error.cause).toBe(cause);
    // The code goes to the detail (for the logs), never to the public message.
    expect(error.detail).toBe(`upstream request failed: ${code}`);
    expect(error.message).toBe(error.statusText);
  });

  it('returns a ProxyError unchanged', () => {
    const limited = new RateLimitedError();
    expect(classifyUpstreamError(limited)).toBe(limited);
  });

  it('treats a non-error value as internal', () => {
    expect(classifyUpstreamError('weird')).toBeInstanceOf(InternalProxyError);
  });
});
