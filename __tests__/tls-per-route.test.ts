import http from 'node:http';
import https from 'node:https';
import { WebSocket } from 'ws';
import { createProxy, ProxyOptionsError, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyFront, type ProxyFront } from './helpers/apps.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import { get, type Answer } from './helpers/route-lookup.ts';
import { makePki, PASSPHRASE, startTlsUpstream, type Pki, type TlsUpstream } from './helpers/tls.ts';

/**
 * TLS to upstreams, per route and proxy-wide, over real TLS: a CA, leaf,
 * expired, self-signed and client certificates made with openssl for this
 * run, upstreams that serve them (one requiring a client certificate), and
 * what the proxy does with each.
 */

type ExpressFactory = (typeof EXPRESS_VERSIONS)[number][1];

const causeCodes = (records: LogRecord[]) => records.map((r) => (r.cause as { code?: string } | undefined)?.code);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let pki: Pki;
const upstreams: TlsUpstream[] = [];
const fronts: ProxyFront[] = [];
let trusted: TlsUpstream;

beforeAll(async () => {
  pki = makePki();
  trusted = await upstream(pki.leaf);
});

afterAll(async () => {
  for (const started of fronts.splice(0)) await started.close();
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

async function upstream(options: https.ServerOptions): Promise<TlsUpstream> {
  const started = await startTlsUpstream(options);
  upstreams.push(started);
  return started;
}

async function front(options: ProxyOptions, express?: ExpressFactory): Promise<ProxyFront> {
  const started = await startProxyFront(options, express);
  fronts.push(started);
  return started;
}

describe.each(EXPRESS_VERSIONS)('a private CA for one route (%s)', (_name, express) => {
  it('the route with tls.ca gets 200 over one kept-alive connection; a route to the same upstream without it gets 502 tls_certificate_error', async () => {
    const { logger, records } = captureLogs('info');
    const { port } = await front(
      {
        routes: { 'internal.localhost': { target: trusted.url, tls: { ca: pki.ca } }, 'public.localhost': trusted.url },
        changeOrigin: true,
        logger,
      },
      express,
    );
    const before = trusted.connections();
    const first = await get(port, 'internal.localhost', `${PREFIX}/one`);
    const second = await get(port, 'internal.localhost', `${PREFIX}/two`);
    expect([first.status, first.body, second.status, second.body]).toEqual([200, 'tls /one', 200, 'tls /two']);
    expect(trusted.connections() - before).toBe(1);

    const refused = await get(port, 'public.localhost', `${PREFIX}/x`);
    expect([refused.status, refused.headers['proxy-status'], refused.body]).toEqual([502, 'proxy; error=tls_certificate_error', 'Bad Gateway']);
    // The reason is the log's: an unknown CA.
    expect(records.map((r) => [r.level, r.code])).toEqual([['warn', 'UPSTREAM_UNREACHABLE']]);
    expect(causeCodes(records)).toEqual(['UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
  });
});

describe('self-signed upstreams, trusted per route', () => {
  it('one trusted for its route only: another self-signed upstream without tls is refused, and nothing became process-wide', async () => {
    const selfA = await upstream(pki.selfA);
    const selfB = await upstream(pki.selfB);
    const { logger, records } = captureLogs('info');
    const { port } = await front({
      routes: {
        'a.localhost': { target: selfA.url, tls: { ca: pki.selfA.cert } },
        'b.localhost': selfB.url,
        // A's certificate trusted for B proves nothing about B.
        'b-with-a.localhost': { target: selfB.url, tls: { ca: pki.selfA.cert } },
      },
      changeOrigin: true,
      logger,
    });
    const a = await get(port, 'a.localhost', '/a');
    const b = await get(port, 'b.localhost', '/b');
    const bWithA = await get(port, 'b-with-a.localhost', '/b');
    expect([a.status, a.body]).toEqual([200, 'tls /a']);
    expect([b.status, b.headers['proxy-status']]).toEqual([502, 'proxy; error=tls_certificate_error']);
    expect([bWithA.status, bWithA.headers['proxy-status']]).toEqual([502, 'proxy; error=tls_certificate_error']);
    expect(causeCodes(records)).toEqual(['DEPTH_ZERO_SELF_SIGNED_CERT', 'DEPTH_ZERO_SELF_SIGNED_CERT']);
    expect(selfB.connections()).toBe(0);

    expect(process.env.NODE_TLS_REJECT_UNAUTHORIZED).toBeUndefined();
    // A plain https request in the same process still refuses A's certificate.
    const direct = await new Promise<string>((resolve) => {
      https.get(`${selfA.url}/direct`, { agent: false }, () => resolve('accepted')).on('error', (err: NodeJS.ErrnoException) => resolve(err.code!));
    });
    expect(direct).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('rejectUnauthorized: false accepts any certificate for that route only', async () => {
    const selfB = await upstream(pki.selfB);
    const { logger, records } = captureLogs('info');
    const { port } = await front({
      routes: { 'lax.localhost': { target: selfB.url, tls: { rejectUnauthorized: false } }, 'strict.localhost': selfB.url },
      logger,
    });
    expect(await get(port, 'lax.localhost', '/lax')).toMatchObject({ status: 200, body: 'tls /lax' });
    expect(await get(port, 'strict.localhost', '/strict')).toMatchObject({ status: 502, headers: { 'proxy-status': 'proxy; error=tls_certificate_error' } });
    expect(causeCodes(records)).toEqual(['DEPTH_ZERO_SELF_SIGNED_CERT']);
  });
});

describe('certificate failures: a 502 tls_certificate_error, the reason in the log', () => {
  it('an expired certificate', async () => {
    const expired = await upstream(pki.expired);
    const { logger, records } = captureLogs('info');
    const { port } = await front({ routes: { 'x.localhost': { target: expired.url, tls: { ca: pki.ca } } }, changeOrigin: true, logger });
    const answer = await get(port, 'x.localhost', '/x');
    expect([answer.status, answer.headers['proxy-status'], answer.body]).toEqual([502, 'proxy; error=tls_certificate_error', 'Bad Gateway']);
    expect(causeCodes(records)).toEqual(['CERT_HAS_EXPIRED']);
  });

  it("a host name mismatch, and servername naming the certificate's host instead", async () => {
    const named = await upstream(pki.named);
    const { logger, records } = captureLogs('info');
    const { port } = await front({
      routes: {
        'mismatch.localhost': { target: named.url, tls: { ca: pki.ca } },
        'named.localhost': { target: named.url, tls: { ca: pki.ca, servername: 'internal.test' } },
      },
      logger,
    });
    const mismatch = await get(port, 'mismatch.localhost', '/m');
    expect([mismatch.status, mismatch.headers['proxy-status']]).toEqual([502, 'proxy; error=tls_certificate_error']);
    expect(causeCodes(records)).toEqual(['ERR_TLS_CERT_ALTNAME_INVALID']);
    // The client's Host (named.localhost) goes upstream as it is; SNI and the check use servername.
    expect(await get(port, 'named.localhost', '/n')).toMatchObject({ status: 200, body: 'tls /n' });
  });
});

describe('mutual TLS', () => {
  let strict: TlsUpstream;
  beforeAll(async () => {
    strict = await upstream({ ...pki.leaf, requestCert: true, rejectUnauthorized: true, ca: pki.ca });
  });

  it('the client certificate is presented (plain key, and encrypted key with its passphrase)', async () => {
    const { logger, records } = captureLogs('info');
    const { port } = await front({
      routes: {
        'plain.localhost': { target: strict.url, tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } },
        'encrypted.localhost': { target: strict.url, tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.encryptedKey, passphrase: PASSPHRASE } },
      },
      changeOrigin: true,
      logger,
    });
    expect(await get(port, 'plain.localhost', '/p')).toMatchObject({ status: 200, body: 'tls /p' });
    expect(await get(port, 'encrypted.localhost', '/e')).toMatchObject({ status: 200, body: 'tls /e' });
    expect(strict.clients.slice(-2)).toEqual(['the proxy', 'the proxy']);
    expect(records).toEqual([]);
  });

  it('without a client certificate: 502, the alert in the log, never a 500', async () => {
    const { logger, records } = captureLogs('info');
    const { port } = await front({ routes: { 'x.localhost': { target: strict.url, tls: { ca: pki.ca } } }, changeOrigin: true, logger });
    const answer = await get(port, 'x.localhost', '/x');
    expect([answer.status, answer.headers['proxy-status'], answer.body]).toEqual([502, 'proxy; error=tls_certificate_error', 'Bad Gateway']);
    expect(causeCodes(records)).toEqual(['ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED']);
  });
});

describe('proxy-wide tls', () => {
  it('applies to every https route; a route with its own tls replaces it whole', async () => {
    const strict = await upstream({ ...pki.leaf, requestCert: true, rejectUnauthorized: true, ca: pki.ca });
    const { logger, records } = captureLogs('info');
    const { port } = await front({
      routes: {
        'wide.localhost': strict.url,
        // Its own tls has no ca: the proxy-wide CA does not carry over.
        'own.localhost': { target: strict.url, tls: { cert: pki.client.cert, key: pki.client.key } },
      },
      tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key },
      changeOrigin: true,
      logger,
    });
    expect(await get(port, 'wide.localhost', '/w')).toMatchObject({ status: 200, body: 'tls /w' });
    expect(await get(port, 'own.localhost', '/o')).toMatchObject({ status: 502, headers: { 'proxy-status': 'proxy; error=tls_certificate_error' } });
    // The upstream sends its chain up to the CA, which this route does not trust.
    expect(causeCodes(records)).toEqual(['SELF_SIGNED_CERT_IN_CHAIN']);
  });
});

describe('WebSockets to wss upstreams', () => {
  function open(port: number, host: string): Promise<{ ws: WebSocket; first: string } | { status: number; proxyStatus: string | undefined }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/live`, { headers: { host } });
      ws.once('message', (data) => resolve({ ws, first: String(data) }));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        resolve({ status: res.statusCode!, proxyStatus: res.headers['proxy-status'] as string | undefined });
      });
      ws.once('error', reject);
    });
  }

  it('over a private CA and a client certificate; the same route without tls is refused 502 tls_certificate_error', async () => {
    const strict = await upstream({ ...pki.leaf, requestCert: true, rejectUnauthorized: true, ca: pki.ca });
    const { logger, records } = captureLogs('info');
    const { port } = await front({
      routes: {
        'ws.localhost': { target: strict.url, tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } },
        'bare.localhost': strict.url,
      },
      changeOrigin: true,
      logger,
    });
    const opened = await open(port, 'ws.localhost');
    if (!('ws' in opened)) throw new Error(`refused: ${JSON.stringify(opened)}`);
    expect(opened.first).toBe('wss hello /live');
    const echoed = new Promise<string>((resolve) => opened.ws.once('message', (data) => resolve(String(data))));
    opened.ws.send('through wss');
    expect(await echoed).toBe('through wss');
    opened.ws.terminate();

    expect(await open(port, 'bare.localhost')).toEqual({ status: 502, proxyStatus: 'proxy; error=tls_certificate_error' });
    // This upstream sends its chain up to the CA (its `ca` option): the unknown CA is named so.
    expect(causeCodes(records)).toEqual(['SELF_SIGNED_CERT_IN_CHAIN']);
  });
});

describe('a keep-alive pool per TLS setting', () => {
  it('two settings never share a connection; equal settings (distinct objects) do', async () => {
    const lax = await upstream(pki.selfA);
    // Settings that differ only in what they trust: nothing Node's own pool key would tell apart.
    const { port } = await front({
      routes: {
        'one.localhost': { target: lax.url, tls: { ca: pki.selfA.cert } },
        'same.localhost': { target: lax.url, tls: { ca: pki.selfA.cert } },
        'other.localhost': { target: lax.url, tls: { ca: [pki.selfA.cert, pki.ca] } },
      },
      changeOrigin: true,
      logger: captureLogs('info').logger,
    });
    await get(port, 'one.localhost', '/1');
    await get(port, 'same.localhost', '/2');
    expect(lax.connections()).toBe(1);
    await get(port, 'other.localhost', '/3');
    await get(port, 'other.localhost', '/4');
    expect(lax.connections()).toBe(2);
    expect(lax.open()).toBe(2);
  });

  it('bounded: past 64 settings the least recently used pool is dropped and its idle connection closed; close() ends the rest', async () => {
    const lax = await upstream(pki.selfA);
    // A route function naming a new setting per request.
    const { port, proxy } = await front({
      routes: (req) => ({ target: lax.url, tls: { rejectUnauthorized: false, servername: `s${String(req.headers['x-n'])}.test` } }),
      logger: captureLogs('info').logger,
    });
    const send = (n: number) =>
      new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: `/${n}`, agent: false, headers: { host: 'any.localhost', 'x-n': String(n) } }, (res) => res.resume().on('end', resolve)).on('error', reject);
      });
    for (let n = 1; n <= 64; n++) await send(n);
    expect([lax.connections(), lax.open()]).toEqual([64, 64]);
    await send(65);
    const settle = async (open: number) => {
      for (let i = 0; i < 100 && lax.open() !== open; i++) await sleep(10);
    };
    await settle(64);
    expect([lax.connections(), lax.open()]).toEqual([65, 64]);
    await proxy.close({ timeout: 100 });
    await settle(0);
    expect(lax.open()).toBe(0);
  });

  it('a pool dropped while a request is on it: the response ends whole, then its connection closes', async () => {
    const lax = await upstream(pki.selfA);
    const { port } = await front({
      routes: (req) => ({ target: lax.url, tls: { rejectUnauthorized: false, servername: `busy${String(req.headers['x-n'])}.test` } }),
      logger: captureLogs('info').logger,
    });
    const send = (n: number, requestPath = `/${n}`) =>
      new Promise<Answer>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: requestPath, agent: false, headers: { host: 'any.localhost', 'x-n': String(n) } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        }).on('error', reject);
      });
    const slow = send(0, '/slow');
    await sleep(50);
    // 64 newer settings push the slow request's pool out while it waits.
    for (let n = 1; n <= 64; n++) await send(n);
    expect(await slow).toMatchObject({ status: 200, body: 'tls /slow' });
    for (let i = 0; i < 100 && lax.open() !== 64; i++) await sleep(10);
    expect([lax.connections(), lax.open()]).toEqual([65, 64]);
  });
});

describe('tls options', () => {
  const build = (options: Partial<ProxyOptions>) => () => createProxy({ routes: { 'a.localhost': 'https://127.0.0.1:1' }, logger: false, ...options } as ProxyOptions);

  it.each([
    ['an unknown key', { tls: { rejectUnauthorised: false } }, 'unknown option "tls.rejectUnauthorised"; did you mean "tls.rejectUnauthorized"?'],
    ['a cert without its key', { tls: { cert: 'x' } }, 'tls.cert and tls.key go together: a client certificate needs its key'],
    ['an IP address as servername', { tls: { servername: '10.0.0.1' } }, 'tls.servername must be a host name (not an IP address); got "10.0.0.1"'],
    ['a ca that is not PEM text', { tls: { ca: 5 } }, 'tls.ca must be a PEM string or Buffer, or an array of them; got 5'],
    ['rejectUnauthorized not a boolean', { tls: { rejectUnauthorized: 'no' } }, 'tls.rejectUnauthorized must be true or false; got "no"'],
    ['tls with an https agent', { tls: { rejectUnauthorized: false }, agent: { https: new https.Agent() } }, 'tls and an https agent both say how to reach https upstreams'],
    ['a route tls that is not an object', { routes: { 'a.localhost': { target: 'https://127.0.0.1:1', tls: true } } }, 'routes["a.localhost"].tls must be an object { ca, cert, key, passphrase, servername, rejectUnauthorized }; got true'],
    ['a route tls on a unix socket route', { routes: { 'a.localhost': { socketPath: '/run/app.sock', tls: {} } } }, 'routes["a.localhost"].tls applies to https: upstreams, and the route has none'],
  ])('%s is refused at construction', (_what, options, message) => {
    expect(build(options as Partial<ProxyOptions>)).toThrow(ProxyOptionsError);
    expect(build(options as Partial<ProxyOptions>)).toThrow(`honest-proxy: ${message}`);
  });

  it('a bad tls from a route function: that request gets a 500, the option named in the log', async () => {
    const { logger, records } = captureLogs('info');
    const { port } = await front({ routes: () => ({ target: trusted.url, tls: { rejectUnauthorised: false } as never }), logger });
    const answer = await get(port, 'x.localhost', '/x');
    expect([answer.status, answer.headers['proxy-status'], answer.body]).toEqual([500, 'proxy; error=proxy_internal_error', 'Internal Server Error']);
    expect(records.map((r) => [r.level, r.code])).toEqual([['error', 'INTERNAL_PROXY_ERROR']]);
    expect(JSON.stringify(records[0]!.cause)).toContain('tls.rejectUnauthorised');
  });

  it('a key that does not decrypt, or is not a key, is refused at construction, naming the option', () => {
    expect(build({ tls: { cert: pki.client.cert, key: pki.client.encryptedKey, passphrase: 'wrong' } })).toThrow(/^honest-proxy: tls: .*(bad decrypt|decrypt)/i);
    expect(build({ routes: { 'a.localhost': { target: 'https://127.0.0.1:1', tls: { cert: pki.client.cert, key: 'not a key' } } } })).toThrow(/^honest-proxy: routes\["a.localhost"\]\.tls: /);
  });
});
