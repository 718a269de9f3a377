import { spawn, type ChildProcess } from 'node:child_process';
import http, { type RequestListener, type Server } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';

export interface Running {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:0 and tracks sockets so close() never waits on a keep-alive. */
export async function listen(server: Server | net.Server): Promise<Running> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Upstream extends Running {
  /** Requests as the upstream saw them. */
  seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }>;
  connections: number;
}

/** A real HTTP upstream that records what reached it, then calls `handler`. */
export async function startUpstream(handler: RequestListener): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
    });
    handler(req, res);
  });
  const upstream = { seen, connections: 0 } as Upstream;
  server.on('connection', () => upstream.connections++);
  return Object.assign(upstream, await listen(server));
}

// Below the kernel's ephemeral range (32768-60999 on Linux, 49152 and up on
// macOS and Windows). A port that listen(0) gave and we let go is soon given to
// the next listen(0), a server of another test file running beside this one:
// the "closed" port then answers (a 404 where a 502 was expected). Ports down
// here are never given out by the kernel, to a listen(0) or a connection.
const QUIET_PORTS = { from: 20_000, to: 32_767 };

/** A port on which nothing listens: one nobody holds, bound once to be sure, then released. */
export async function closedPort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = QUIET_PORTS.from + Math.floor(Math.random() * (QUIET_PORTS.to - QUIET_PORTS.from + 1));
    const server = net.createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }
  throw new Error(`no free port from ${QUIET_PORTS.from} to ${QUIET_PORTS.to} in 50 tries`);
}

/** A raw TCP server: `onConnection` decides what bytes (if any) the peer gets. */
export async function startRawServer(onConnection: (socket: Socket) => void): Promise<Running & { connections: number }> {
  const server = net.createServer(onConnection);
  const running = Object.assign(await listen(server), { connections: 0 });
  server.on('connection', () => running.connections++);
  return running;
}

/**
 * A port whose listen backlog is full, so a new connect() hangs in SYN-SENT:
 * the one honest way to get a connect timeout on loopback. Python holds the
 * socket because Node always accepts.
 */
export async function startBlackholePort(): Promise<Running> {
  const child: ChildProcess = spawn('python3', [
    '-c',
    'import socket,sys,time\ns=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0)\nprint(s.getsockname()[1], flush=True)\ntime.sleep(120)',
  ]);
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.once('data', (data) => resolve(Number(String(data).trim())));
  });
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => {}));
  await new Promise((resolve) => setTimeout(resolve, 100));
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of fillers) socket.destroy();
      child.kill();
    },
  };
}
