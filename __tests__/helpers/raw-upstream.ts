import net, { type Socket } from 'node:net';
import { listen, type Running } from './servers.ts';

export interface RawExchange {
  method: string;
  path: string;
  /** 1 for the first request on its connection, 2 for the second, ... */
  onConnection: number;
  connection: number;
}

export interface RawUpstream extends Running {
  seen: RawExchange[];
  connections: number;
  open: number;
}

/**
 * A minimal HTTP/1.1 server on a raw socket, so a test controls exactly when
 * a kept-alive connection dies and whether a `Keep-Alive` hint is sent (Node's
 * own server always sends one, which hides the race). `decide` says what to do
 * with each request: answer it, reset the connection, or ignore it (read it,
 * never answer).
 */
export async function startRawUpstream(options: {
  decide: (exchange: RawExchange) => 'answer' | 'reset' | 'ignore';
  /** Close a connection after this many ms without a request, sending no hint first. */
  idleCloseMs?: number;
}): Promise<RawUpstream> {
  const upstream = { seen: [] as RawExchange[], connections: 0, open: 0 } as RawUpstream;
  const server = net.createServer((socket: Socket) => {
    const connection = ++upstream.connections;
    upstream.open++;
    socket.once('close', () => upstream.open--);
    socket.on('error', () => {});
    let onConnection = 0;
    let buffered = Buffer.alloc(0);
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = () => {
      if (options.idleCloseMs === undefined) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => socket.end(), options.idleCloseMs);
    };
    armIdle();
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const headEnd = buffered.indexOf('\r\n\r\n');
        if (headEnd === -1) return;
        const head = buffered.subarray(0, headEnd).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < headEnd + 4 + length) return;
        buffered = buffered.subarray(headEnd + 4 + length);
        const [method = '', path = ''] = head.split(' ');
        const exchange = { method, path, onConnection: ++onConnection, connection };
        upstream.seen.push(exchange);
        const decision = options.decide(exchange);
        if (decision === 'reset') {
          clearTimeout(idleTimer);
          socket.resetAndDestroy();
          return;
        }
        if (decision === 'ignore') continue;
        const body = `${method} ${path} #${exchange.onConnection}`;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        armIdle();
      }
    });
    socket.once('close', () => clearTimeout(idleTimer));
  });
  return Object.assign(upstream, await listen(server));
}
