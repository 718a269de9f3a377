import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createProxy, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { captureLogs } from './helpers/logs.ts';
import { listen, type Running } from './helpers/servers.ts';

/**
 * HTTPS upstreams over real TLS: a CA and leaf certificates made with openssl
 * for this run, an upstream that serves them, and the proxy's verdict on each.
 */

const HOST = 'app.localhost';

interface Pki {
  ca: string;
  /** Signed by `ca`, for 127.0.0.1. */
  leaf: { key: string; cert: string };
  /** Signed by nobody but itself, for 127.0.0.1. */
  selfSigned: { key: string; cert: string };
}

function makePki(): Pki {
  const dir = mkdtempSync(path.join(tmpdir(), 'honest-proxy-pki-'));
  const at = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '2', '-subj', '/CN=honest-proxy test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('leaf.key'), '-out', at('leaf.csr'), '-subj', '/CN=127.0.0.1');
    writeFileSync(at('leaf.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
    openssl('x509', '-req', '-in', at('leaf.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('leaf.pem'), '-days', '2', '-extfile', at('leaf.ext'));
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('self.key'), '-out', at('self.pem'), '-days', '2', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1');
    const read = (name: string) => readFileSync(at(name), 'utf8');
    return { ca: read('ca.pem'), leaf: { key: read('leaf.key'), cert: read('leaf.pem') }, selfSigned: { key: read('self.key'), cert: read('self.pem') } };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function startTlsUpstream(credentials: { key: string; cert: string }): Promise<Running & { connections: () => number; open: () => number }> {
  const server = https.createServer(credentials, (req, res) => res.end(`tls ${req.url}`));
  let connections = 0;
  let open = 0;
  server.on('secureConnection', (socket: Socket) => {
    connections++;
    open++;
    socket.once('close', () => open--);
  });
  const running = await listen(server as unknown as http.Server);
  return Object.assign(running, { url: `https://127.0.0.1:${running.port}`, connections: () => connections, open: () => open });
}

function get(port: number, requestPath: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: requestPath, agent: false, headers: { host: HOST } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

describe('HTTPS upstreams', () => {
  let pki: Pki;
  let trusted: Awaited<ReturnType<typeof startTlsUpstream>>;
  let selfSigned: Awaited<ReturnType<typeof startTlsUpstream>>;
  const fronts: Array<{ running: Running; proxy: HonestProxy }> = [];

  beforeAll(async () => {
    pki = makePki();
    trusted = await startTlsUpstream(pki.leaf);
    selfSigned = await startTlsUpstream(pki.selfSigned);
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
