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
