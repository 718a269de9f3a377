import { createProxy, portHostRoutes, ProxyOptionsError, type ProxyOptions } from '../src/index.ts';

const routes = { 'app.localhost': 'http://127.0.0.1:3000' };

function construct(options: unknown): () => unknown {
  return () => createProxy(options as ProxyOptions);
}

describe('options are checked at construction', () => {
  it('accepts a minimal valid configuration', () => {
    expect(typeof createProxy({ routes })).toBe('function');
  });

  it.each<[string, unknown, RegExp]>([
    ['no options', undefined, /needs an options object/],
    ['no routes', {}, /routes is required/],
    ['routes of the wrong type', { routes: 'http://x' }, /routes must be a record of host -> target, or a function/],
    ['an empty route record', { routes: {} }, /routes must name at least one host/],
    ['a route key that is not a host', { routes: { 'not a host': 'http://127.0.0.1' } }, /routes: "not a host" is not a host name/],
    ['two keys for one host', { routes: { 'A.test': 'http://127.0.0.1', 'a.test.': 'http://127.0.0.1' } }, /names the same host/],
    ['a relative target', { routes: { 'a.test': '/relative' } }, /routes\["a.test"\] must be an absolute http: or https: URL; got "\/relative"/],
    ['a non-http target', { routes: { 'a.test': 'ftp://files' } }, /must be an absolute http: or https: URL/],
    ['a target object without target', { routes: { 'a.test': { url: 'http://x' } } }, /routes\["a.test"\] must be a URL string, a URL, an array of them, or \{ target/],
    ['an unknown option', { routes, timeout: 5 }, /unknown option "timeout"; known options are/],
    ['a bad errorFormat', { routes, errorFormat: 'html' }, /errorFormat must be 'text', 'json' or a function/],
    ['a bad proxyStatus', { routes, proxyStatus: 'has space' }, /proxyStatus must be false or a name/],
    ['a bad onError', { routes, onError: 'throw' }, /onError must be 'respond' or 'next'; got "throw"/],
    ['a negative connect timeout', { routes, timeouts: { connect: -1 } }, /timeouts.connect must be a whole number of milliseconds/],
    ['a fractional response timeout', { routes, timeouts: { response: 1.5 } }, /timeouts.response must be a whole number/],
    ['an unknown timeout', { routes, timeouts: { read: 5 } }, /unknown option timeouts.read/],
    ['a logger that is not winston', { routes, logger: console }, /logger must be a winston Logger/],
    ['a bad request id header', { routes, requestIdHeader: 'x id' }, /requestIdHeader must be false or a header name/],
    ['a non-boolean changeOrigin', { routes, changeOrigin: 'yes' }, /changeOrigin must be true or false/],
  ])('rejects %s', (_case, options, message) => {
    expect(construct(options)).toThrow(message);
  });

  it('throws a ProxyOptionsError with a stable code', () => {
    let thrown: unknown;
    try {
      construct({ routes, onError: 1 })();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect(thrown).toMatchObject({ code: 'ERR_HONEST_PROXY_OPTIONS', message: expect.stringMatching(/^honest-proxy: onError/) });
  });

  it('rejects a bad portHostRoutes configuration', () => {
    expect(() => portHostRoutes({ domain: '', resolve: () => undefined })).toThrow(/domain must be a host name/);
    expect(() => portHostRoutes({ domain: 'localhost' } as never)).toThrow(/resolve must be a function/);
  });
});

describe('rateLimit takes express-rate-limit options, except those that render the 429', () => {
  function thrownBy(options: unknown): unknown {
    try {
      construct(options)();
    } catch (err) {
      return err;
    }
    return undefined;
  }

  it.each<[string, unknown]>([
    ['handler', () => undefined],
    ['message', 'Slow down'],
    ['statusCode', 503],
    ['standardHeaders', 'draft-8'],
    ['legacyHeaders', true],
    ['headers', true],
  ])('refuses rateLimit.%s, saying the proxy renders the 429 itself', (name, value) => {
    const thrown = thrownBy({ routes, rateLimit: { limit: 5, [name]: value } });
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    const { message } = thrown as ProxyOptionsError;
    expect(message).toMatch(new RegExp(`^honest-proxy: rateLimit\\.${name}\\b.* is not accepted: the proxy renders the 429 itself`));
    expect(message).toContain('with Retry-After and the RateLimit headers');
    expect(message).toContain('errorFormat');
  });

  it('accepts every other v8 option at construction', () => {
    const proxy = createProxy({
      routes,
      rateLimit: {
        windowMs: 30_000,
        max: 10,
        ipv6Subnet: 64,
        skip: () => false,
        skipSuccessfulRequests: false,
        skipFailedRequests: true,
        requestWasSuccessful: (_req, res) => res.statusCode < 500,
        retryAfter: 30,
        identifier: 'per-client',
        requestPropertyName: 'quota',
        validate: { trustProxy: false },
        logger: { error: () => undefined, warn: () => undefined },
        passOnStoreError: false,
      },
    });
    expect(typeof proxy).toBe('function');
  });

  it.each<[string, unknown, RegExp]>([
    ['both passOnStoreError and onStoreError', { limit: 1, passOnStoreError: true, onStoreError: 'deny' }, /rateLimit\.passOnStoreError and rateLimit\.onStoreError .*give only one/],
    ['both limit and max', { limit: 1, max: 2 }, /rateLimit\.limit and rateLimit\.max .*give only one/],
    ['a bad max', { max: -1 }, /rateLimit\.max must be a whole number above 0/],
    ['a non-boolean skipFailedRequests', { limit: 1, skipFailedRequests: 'yes' }, /rateLimit\.skipFailedRequests must be true or false/],
    ['a non-function requestWasSuccessful', { limit: 1, requestWasSuccessful: true }, /rateLimit\.requestWasSuccessful must be a function/],
    ['ipv6Subnet out of range', { limit: 1, ipv6Subnet: 129 }, /rateLimit\.ipv6Subnet must be a prefix length from 1 to 128/],
    ['ipv6Subnet with a keyGenerator', { limit: 1, ipv6Subnet: 64, keyGenerator: () => 'k' }, /rateLimit\.ipv6Subnet applies to the default key only/],
    ['a requestPropertyName the request already has', { limit: 1, requestPropertyName: 'headers' }, /rateLimit\.requestPropertyName must be a property name the request does not already have/],
    ['a bad retryAfter', { limit: 1, retryAfter: -5 }, /rateLimit\.retryAfter must be a whole number of seconds/],
    ['a logger without warn', { limit: 1, logger: { error: () => undefined } }, /rateLimit\.logger must be an object with error/],
    ['a bad validate', { limit: 1, validate: 'all' }, /rateLimit\.validate must be true, false, or a record/],
  ])('rejects %s', (_case, rateLimit, message) => {
    const thrown = thrownBy({ routes, rateLimit });
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect((thrown as Error).message).toMatch(message);
  });
});

describe('portHostRoutes reports a bad configuration as a ProxyOptionsError', () => {
  it.each<[string, unknown, RegExp]>([
    ['an empty domain', { domain: '', resolve: () => undefined }, /^honest-proxy: portHostRoutes: domain must be a host name/],
    ['no resolve', { domain: 'localhost' }, /^honest-proxy: portHostRoutes: resolve must be a function/],
  ])('%s', (_case, options, message) => {
    let thrown: unknown;
    try {
      portHostRoutes(options as never);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect(thrown).toMatchObject({ code: 'ERR_HONEST_PROXY_OPTIONS', name: 'ProxyOptionsError', message: expect.stringMatching(message) });
  });
});
