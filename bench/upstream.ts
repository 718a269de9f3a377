// The upstream every variant talks to: a bare node:http server doing as little
// per request as possible, so what differs between variants is the proxy.
// Bodies are ASCII so that a proxy decoding them as text (express-http-proxy
// does by default) still forwards the same byte count.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { announce } from './ipc/child.ts';

const SMALL_BODY = Buffer.alloc(1024, 'a');
// One chunk reused for every write: the upstream must not be what allocates.
const CHUNK = Buffer.alloc(64 * 1024, 'b');
const MAX_STREAM_BYTES = 1024 * 1024 * 1024;

/** Writes `total` bytes honouring backpressure; stops if the client goes away. */
function streamBytes(res: http.ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      if (res.destroyed) return;
      const size = Math.min(left, CHUNK.length);
      left -= size;
      if (!res.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

/** Reads and drops the body, answering with how many bytes arrived so the client can check nothing was lost. */
function sink(req: http.IncomingMessage, res: http.ServerResponse): void {
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  req.on('end', () => {
    const body = JSON.stringify({ received });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/';
  if (req.method === 'GET' && url === '/small') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL_BODY.length });
    res.end(SMALL_BODY);
  } else if (req.method === 'GET' && url.startsWith('/stream?bytes=')) {
    const total = Number(url.slice('/stream?bytes='.length));
    if (!Number.isSafeInteger(total) || total < 0 || total > MAX_STREAM_BYTES) {
      res.writeHead(400).end();
      return;
    }
    streamBytes(res, total);
  } else if (req.method === 'POST' && url === '/sink') {
    sink(req, res);
  } else {
    res.writeHead(404).end();
  }
}

await announce(
  () =>
    new Promise((resolve, reject) => {
      const server = http.createServer(handle);
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as AddressInfo).port }));
    }),
);
