// Real TLS for the suites that need it: a CA and the certificates these tests
// use, made with openssl for this run, and an https upstream that serves them.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import { listen, type Running } from './servers.ts';

export interface KeyPair {
  key: string;
  cert: string;
}

export interface Pki {
  ca: string;
  /** Signed by `ca`, for 127.0.0.1. */
  leaf: KeyPair;
  /** Signed by `ca`, for the name internal.test only. */
  named: KeyPair;
  /** Signed by `ca`, for 127.0.0.1, and no longer valid. */
  expired: KeyPair;
  /** Two self-signed certificates for 127.0.0.1. */
  selfA: KeyPair;
  selfB: KeyPair;
  /** A client certificate signed by `ca`, its key in the clear and encrypted with PASSPHRASE. */
  client: KeyPair & { encryptedKey: string };
}

export const PASSPHRASE = 'correct horse';

export function makePki(): Pki {
  const dir = mkdtempSync(path.join(tmpdir(), 'honest-proxy-tls-'));
  const at = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const signed = (name: string, cn: string, ext: string, days = '2') => {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', `/CN=${cn}`);
    writeFileSync(at(`${name}.ext`), `${ext}\nbasicConstraints=CA:FALSE\n`);
    openssl('x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at(`${name}.pem`), '-days', days, '-extfile', at(`${name}.ext`));
  };
  const selfSigned = (name: string) =>
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at(`${name}.key`), '-out', at(`${name}.pem`), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1');
  try {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '2', '-subj', '/CN=honest-proxy tls test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    signed('leaf', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth');
    signed('named', 'internal.test', 'subjectAltName=DNS:internal.test\nextendedKeyUsage=serverAuth');
    // Valid until a day before it was issued.
    signed('expired', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth', '-1');
    signed('client', 'the proxy', 'extendedKeyUsage=clientAuth');
    openssl('pkey', '-in', at('client.key'), '-aes256', '-passout', `pass:${PASSPHRASE}`, '-out', at('client.enc.key'));
    selfSigned('selfA');
    selfSigned('selfB');
    const read = (name: string) => readFileSync(at(name), 'utf8');
    const pair = (name: string) => ({ key: read(`${name}.key`), cert: read(`${name}.pem`) });
    return {
      ca: read('ca.pem'),
      leaf: pair('leaf'),
      named: pair('named'),
      expired: pair('expired'),
      selfA: pair('selfA'),
      selfB: pair('selfB'),
      client: { ...pair('client'), encryptedKey: read('client.enc.key') },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface TlsUpstream extends Running {
  /** TLS connections the upstream accepted (handshake complete), and how many are open. */
  connections: () => number;
  open: () => number;
  /** The client certificate's CN on each request, or '-' without one. */
  clients: string[];
}

/** An https server that answers `tls <url>` and echoes WebSockets. */
export async function startTlsUpstream(options: https.ServerOptions): Promise<TlsUpstream> {
  const clients: string[] = [];
  const server = https.createServer(options, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    clients.push(peer && peer.subject ? String(peer.subject.CN) : '-');
    if (req.url!.startsWith('/slow')) setTimeout(() => res.end(`tls ${req.url}`), 1_000);
    else res.end(`tls ${req.url}`);
  });
  const wss = new WebSocketServer({ server: server as unknown as http.Server });
  wss.on('connection', (socket, req) => {
    socket.send(`wss hello ${req.url}`);
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  let connections = 0;
  let open = 0;
  server.on('secureConnection', (socket: Socket) => {
    connections++;
    open++;
    socket.once('close', () => open--);
  });
  const running = await listen(server as unknown as http.Server);
  const closeServer = running.close;
  return Object.assign(running, {
    url: `https://127.0.0.1:${running.port}`,
    connections: () => connections,
    open: () => open,
    clients,
    close: () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      return closeServer();
    },
  });
}
