import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { createProxy, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { captureLogs } from './helpers/logs.ts';
import { get as getWithHost } from './helpers/route-lookup.ts';
import { listen, type Running } from './helpers/servers.ts';
import { makePki, startTlsUpstream, type Pki, type TlsUpstream } from './helpers/tls.ts';

/**
 * HTTPS upstreams over real TLS: a CA and leaf certificates made with openssl
 * for this run, an upstream that serves them, and the proxy's verdict on each.
 */

const HOST = 'app.localhost';
const get = (port: number, requestPath: string) => getWithHost(port, HOST, requestPath);

describe('HTTPS upstreams', () => {
  let pki: Pki;
  let trusted: TlsUpstream;
  let selfSigned: TlsUpstream;
  const fronts: Array<{ running: Running; proxy: HonestProxy }> = [];

  beforeAll(async () => {
    pki = makePki();
    trusted = await startTlsUpstream(pki.leaf);
    selfSigned = await startTlsUpstream(pki.selfA);
  });

  afterAll(async () => {
    for (const { proxy, running } of fronts) {
      await proxy.close({ timeout: 100 });
      await running.close();
    }
    await Promise.all([trusted.close(), selfSigned.close()]);
  });

  async function front(options: ProxyOptions): Promise<{ port: number; proxy: HonestProxy }> {
    const proxy = createProxy(options);
    const running = await listen(http.createServer((req, res) => proxy(req, res)));
    fronts.push({ running, proxy });
    return { port: running.port, proxy };
  }

  it("with only an https agent passed, close() still destroys the proxy's own http pool", async () => {
    let open = 0;
    const upstreamServer = http.createServer((_req, res) => res.end('plain'));
    upstreamServer.on('connection', (socket: Socket) => {
      open++;
      socket.once('close', () => open--);
    });
    const upstream = await listen(upstreamServer);
    const agent = new https.Agent({ ca: pki.ca });
    try {
      const { port, proxy } = await front({ routes: { [HOST]: upstream.url }, agent: { https: agent }, logger: captureLogs('info').logger });
      expect((await get(port, '/x')).body).toBe('plain');
      // The proxy's own keep-alive pool holds the upstream connection open.
      expect(open).toBe(1);
      await proxy.close({ timeout: 100 });
      const start = Date.now();
      while (open > 0 && Date.now() - start < 1000) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(open).toBe(0);
    } finally {
      agent.destroy();
      await upstream.close();
    }
  });

  it('through a user-supplied https agent that trusts the CA: 200, its pool used, and close() leaves it alone', async () => {
    const agent = new https.Agent({ ca: pki.ca, keepAlive: true });
    const { logger, records } = captureLogs('info');
    // changeOrigin: TLS checks the certificate against the Host sent, here the upstream's own.
    const { port, proxy } = await front({ routes: { [HOST]: trusted.url }, agent: { https: agent }, changeOrigin: true, logger });
    const before = trusted.connections();
    const first = await get(port, '/one');
    const second = await get(port, '/two');
    expect({ answers: [first.status, first.body, second.status, second.body], records }).toEqual({ answers: [200, 'tls /one', 200, 'tls /two'], records: [] });
    // One TLS connection, kept alive in the caller's agent and reused.
    expect(trusted.connections() - before).toBe(1);
    const key = Object.keys(agent.freeSockets)[0]!;
    expect(agent.freeSockets[key]).toHaveLength(1);
    expect(records).toEqual([]);

    await proxy.close({ timeout: 100 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The caller's agent and its pooled connection are the caller's to close.
    expect(agent.freeSockets[key]).toHaveLength(1);
    expect(trusted.open()).toBeGreaterThanOrEqual(1);
    const direct = await new Promise<string>((resolve, reject) =>
      https.get(`${trusted.url}/direct`, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      }).on('error', reject),
    );
    expect(direct).toBe('tls /direct');
    agent.destroy();
  });

  it('a self-signed upstream certificate: 502 with Proxy-Status tls_certificate_error, never a 500', async () => {
    const { logger, records } = captureLogs('info');
    const { port } = await front({ routes: { [HOST]: selfSigned.url }, changeOrigin: true, logger });
    const answer = await get(port, '/x');
    expect(answer.status).toBe(502);
    expect(answer.headers['proxy-status']).toBe('proxy; error=tls_certificate_error');
    expect(answer.body).toBe('Bad Gateway');
    expect(records.map((r) => [r.level, r.code, (r.cause as { code?: string } | undefined)?.code])).toEqual([['warn', 'UPSTREAM_UNREACHABLE', 'DEPTH_ZERO_SELF_SIGNED_CERT']]);
  });

  it("without changeOrigin the certificate is checked against the client's Host: a mismatch is a 502 tls_certificate_error", async () => {
    const agent = new https.Agent({ ca: pki.ca });
    const { logger, records } = captureLogs('info');
    const { port } = await front({ routes: { [HOST]: trusted.url }, agent: { https: agent }, logger });
    const answer = await get(port, '/x');
    expect(answer.status).toBe(502);
    expect(answer.headers['proxy-status']).toBe('proxy; error=tls_certificate_error');
    expect(records.map((r) => (r.cause as { code?: string } | undefined)?.code)).toEqual(['ERR_TLS_CERT_ALTNAME_INVALID']);
    agent.destroy();
  });

  // UNABLE_TO_VERIFY_LEAF_SIGNATURE has no `CERT_` in it: it was a 500, the
  // proxy blaming itself for the upstream's certificate.
  it('a certificate from a CA the proxy does not trust: 502 tls_certificate_error', async () => {
    const { port } = await front({ routes: { [HOST]: trusted.url }, changeOrigin: true, logger: captureLogs('info').logger });
    const answer = await get(port, '/x');
    expect(answer.status).toBe(502);
    expect(answer.headers['proxy-status']).toBe('proxy; error=tls_certificate_error');
  });

  it('a certificate from a CA the proxy does not trust is refused: no request reaches the app', async () => {
    const { logger, records } = captureLogs('info');
    const { port } = await front({ routes: { [HOST]: trusted.url }, changeOrigin: true, logger });
    const before = trusted.connections();
    const answer = await get(port, '/x');
    expect(answer.status).not.toBe(200);
    expect(answer.body).not.toContain('tls /x');
    // The handshake never completed, so the upstream counted no secure connection.
    expect(trusted.connections()).toBe(before);
    expect(records.map((r) => (r.cause as { code?: string } | undefined)?.code)).toEqual(['UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
  });
});
