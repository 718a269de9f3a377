import http, { type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, type HonestProxy, type ProxyOptions, type ProxyRequest } from '../../src/index.ts';
import type { EXPRESS_VERSIONS } from './apps.ts';
import { captureLogs, type LogRecord } from './logs.ts';
import { listen, type Running } from './servers.ts';

export type ExpressFactory = (typeof EXPRESS_VERSIONS)[number][1];

export const MOUNT = '/preview';
export const AUTH = 'Bearer good';

/* ------------------------------------------------------------------ upstream */

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface SeenUpgrade {
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface RealUpstream extends Running {
  /** Complete HTTP requests as the upstream read them. */
  seen: SeenRequest[];
  /** WebSocket upgrade requests as the upstream received them. */
  upgrades: SeenUpgrade[];
  /** performance.now() at which /sse wrote each event. */
  sseWrites: number[];
  /** The exact bytes /gzip sends as its body. */
  gzipBody: Buffer;
  /** The JSON /gzip's body inflates to, and /big-json sends plain. */
  bigJson: string;
  connections: number;
}

const BIG = JSON.stringify({ items: Array.from({ length: 300 }, (_, i) => ({ id: i, name: `item number ${i}`, tags: ['a', 'b', 'c'] })) });

/**
 * A real node:http upstream. Every request is recorded once its body is read.
 *
 * - `/redirect?status=302&location=..&contentLocation=..`: a redirect with those fields
 * - `/cookies`: three Set-Cookie lines
 * - `/sse`: text/event-stream, event N+1 written ~100 ms after event N (3 events)
 * - `/gzip`: a body already `content-encoding: gzip`
 * - `/big-json`: ~20 KB of JSON, no content-encoding
 * - anything else: echoes `{ method, url, headers, body }` as JSON
 *
 * WebSocket upgrades on any path: recorded (url, headers), then an echo server.
 */
export async function startRealUpstream(): Promise<RealUpstream> {
  const gzipBody = gzipSync(Buffer.from(BIG));
  const upstream = { seen: [], upgrades: [], sseWrites: [], gzipBody, bigJson: BIG, connections: 0 } as unknown as RealUpstream;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      upstream.seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      const url = new URL(req.url!, 'http://upstream.invalid');
      const path = url.pathname;
      if (path.endsWith('/redirect')) {
        const headers: Record<string, string> = {};
        const location = url.searchParams.get('location');
        const contentLocation = url.searchParams.get('contentLocation');
        if (location !== null) headers.location = location;
        if (contentLocation !== null) headers['content-location'] = contentLocation;
        res.writeHead(Number(url.searchParams.get('status') ?? 302), { ...headers, 'content-type': 'text/plain', 'content-length': '10' });
        res.end('redirected');
        return;
      }
      if (path.endsWith('/cookies')) {
        res.writeHead(200, [
          'Content-Type', 'text/plain',
          'Set-Cookie', 'a=1; Domain=upstream.internal; Path=/; HttpOnly',
          'Set-Cookie', 'b=2; Path=/',
          'Set-Cookie', 'c=3; Domain=other.example; Path=/x; Secure',
          'Content-Length', '7',
        ]);
        res.end('cookies');
        return;
      }
      if (path.endsWith('/sse')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let n = 0;
        const send = () => {
          n++;
          upstream.sseWrites.push(performance.now());
          res.write(`id: ${n}\ndata: event ${n}\n\n`);
          if (n < 3) setTimeout(send, 100);
          else setTimeout(() => res.end(), 50);
        };
        send();
        return;
      }
      if (path.endsWith('/gzip')) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(gzipBody.length), vary: 'Accept-Encoding' });
        res.end(gzipBody);
        return;
      }
      if (path.endsWith('/big-json')) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(BIG)) });
        res.end(BIG);
        return;
      }
      const echo = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(echo)) });
      res.end(echo);
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upstream.upgrades.push({ url: req.url!, headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
  server.on('connection', () => upstream.connections++);
  const running = await listen(server);
  return Object.assign(upstream, running, {
    close: async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      await running.close();
    },
  });
}

/* ----------------------------------------------------------------------- app */

export interface RealAppOptions<Req extends IncomingMessage = ProxyRequest> {
  /** The proxy's options; a capturing logger is added unless one is given. */
  proxy: ProxyOptions<Req>;
  /** Middleware mounted after auth and BEFORE the proxy (body parsers, compression...). */
  before?: (express: ExpressFactory) => RequestHandler[];
  /** `app.set('trust proxy', ...)`, when given. */
  trustProxy?: unknown;
  /** An error handler mounted last (after the catch-all), for onError: 'next'. */
  errorHandler?: ErrorRequestHandler;
  /** Mount the catch-all fallback route after the proxy. Default true. */
  catchAll?: boolean;
}

export interface RealApp extends Running {
  server: Server;
  proxy: HonestProxy;
  records: LogRecord[];
  /** Messages the app's own WebSocket server received at /app-ws. */
  appWsMessages: string[];
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const query = raw.indexOf('?');
  return query === -1 ? raw : raw.slice(0, query);
}

/**
 * A realistic Express app:
 *
 * auth (Bearer good; /health public) -> `before` middleware -> proxy at /preview
 * -> the app's own express.json / urlencoded / compression -> GET /health
 * -> catch-all (`app fallback`, echoing a parsed body) -> optional error handler.
 *
 * Upgrades: the app's own `ws` server (noServer) answers /app-ws in its own
 * 'upgrade' listener; `proxy.upgradeThrough(app, '/preview')` takes the rest.
 */
export async function startRealApp<Req extends IncomingMessage = ProxyRequest>(express: ExpressFactory, options: RealAppOptions<Req>): Promise<RealApp> {
  const { logger, records } = captureLogs('debug');
  const proxy = createProxy<Req>({ logger, ...options.proxy });
  const app = express();
  if (options.trustProxy !== undefined) app.set('trust proxy', options.trustProxy);

  const requireAuth: RequestHandler = (req, res, next) => {
    if (req.path === '/health') return next();
    if (req.headers.authorization === AUTH) return next();
    res.status(401).json({ error: 'unauthorized' });
  };
  app.use(requireAuth);
  for (const handler of options.before?.(express) ?? []) app.use(handler);
  app.use(MOUNT, proxy);
  app.use(express.json());
  app.use(express.urlencoded({ extended: true }));
  app.get('/health', (_req, res) => {
    res.type('text/plain').send('ok');
  });
  if (options.catchAll !== false) {
    app.use((req, res) => {
      res.status(200).json({ fallback: 'app fallback', method: req.method, url: req.originalUrl, body: req.body ?? null });
    });
  }
  if (options.errorHandler) app.use(options.errorHandler);

  const server = http.createServer(app);

  // The app's own WebSocket server, routed in its own listener.
  const appWsMessages: string[] = [];
  const appWss = new WebSocketServer({ noServer: true });
  appWss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      appWsMessages.push(String(data));
      ws.send(data, { binary: isBinary });
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = pathOf(req.url);
    if (path === '/app-ws') {
      appWss.handleUpgrade(req, socket, head, (ws) => appWss.emit('connection', ws, req));
      return;
    }
    // The proxy's listener below takes /preview; nothing else is served.
    if (path === MOUNT || path.startsWith(`${MOUNT}/`)) return;
    socket.destroy();
  });
  server.on('upgrade', proxy.upgradeThrough(app, MOUNT));

  const running = await listen(server);
  const closeServer = running.close;
  return Object.assign(running, {
    server,
    proxy,
    records,
    appWsMessages,
    close: async () => {
      for (const client of appWss.clients) client.terminate();
      appWss.close();
      await proxy.close({ timeout: 200 });
      await closeServer();
    },
  });
}

/* ------------------------------------------------------------------- clients */

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Field lines as received: [name, value, name, value...]. */
  rawHeaders: string[];
  body: Buffer;
  /** performance.now() when the response head arrived. */
  headAt: number;
}

export interface SendOptions {
  method?: string;
  path: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
  /** Called for every body chunk as it arrives (before decoding). */
  onChunk?: (chunk: Buffer, at: number) => void;
}

/** One request on a fresh connection; the body is returned as received (never decoded). */
export function send(port: number, options: SendOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers: options.headers, agent: false },
      (res) => {
        const headAt = performance.now();
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          options.onChunk?.(chunk, performance.now());
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks), headAt }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface OpenedWs {
  ws: WebSocket;
  /** Every message received so far, in order. */
  messages: string[];
  /** Errors and closes the client saw. */
  events: string[];
  next(): Promise<string>;
}

/** Opens a WebSocket; resolves once open, rejects with ws's error (e.g. `Unexpected server response: 401`). */
export function openWs(port: number, path: string, headers: Record<string, string>): Promise<OpenedWs> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
    const messages: string[] = [];
    const events: string[] = [];
    const waiting: Array<(message: string) => void> = [];
    let read = 0;
    ws.on('message', (data) => {
      messages.push(String(data));
      const waiter = waiting.shift();
      if (waiter) {
        read++;
        waiter(String(data));
      }
    });
    ws.on('error', (err) => {
      events.push(`error: ${err.message}`);
      reject(err);
    });
    ws.on('close', (code) => events.push(`close: ${code}`));
    ws.once('open', () =>
      resolve({
        ws,
        messages,
        events,
        next: () => (read < messages.length ? Promise.resolve(messages[read++]!) : new Promise((r) => waiting.push(r))),
      }),
    );
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
