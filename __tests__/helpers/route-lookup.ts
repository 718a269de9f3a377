import http, { type IncomingHttpHeaders, type Server } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, type HonestProxy, type ProxyOptions } from '../../src/index.ts';
import type { EXPRESS_VERSIONS } from './apps.ts';
import { listen, type Running } from './servers.ts';

type ExpressFactory = (typeof EXPRESS_VERSIONS)[number][1];

export interface Front extends Running {
  server: Server;
  proxy: HonestProxy;
}

/** An Express app with the proxy at `/preview`, upgrades through the app, on 127.0.0.1:0. */
export async function startFront(express: ExpressFactory, options: ProxyOptions): Promise<Front> {
  const app = express();
  const proxy = createProxy(options);
  app.use('/preview', proxy);
  const server = http.createServer(app);
  server.on('upgrade', proxy.upgradeThrough(app, '/preview'));
  return Object.assign(await listen(server), { server, proxy });
}

/** An upstream that answers HTTP with its name and the path, and echoes WebSocket messages after a hello. */
export async function startNamedUpstream(name: string): Promise<Running & { requests: number }> {
  const server = http.createServer((req, res) => {
    running.requests++;
    res.end(`${name} ${req.url}`);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket) => {
    socket.send(`hello from ${name}`);
    socket.on('message', (data) => socket.send(data));
  });
  const running = Object.assign(await listen(server), { requests: 0 });
  const close = running.close;
  running.close = async () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    await close();
  };
  return running;
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A GET through the front with the given Host; the client gives up after `timeoutMs` (a hang must fail, not time the test out). */
export function get(port: number, host: string, path = '/preview/', timeoutMs = 8000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ port, host: '127.0.0.1', path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** Sends a GET and destroys it once `until` resolves; resolves when the client side is closed. */
export function abandonedGet(port: number, host: string, until: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get({ port, host: '127.0.0.1', path: '/preview/', headers: { host }, agent: false });
    req.on('error', () => {});
    req.on('close', () => resolve());
    void until.then(() => req.destroy());
  });
}

/** Opens a WebSocket through the front; resolves with its first message, or with the HTTP response that refused it. */
export function openWebSocket(port: number, host: string, timeoutMs = 8000): Promise<{ message: string; ws: WebSocket } | Answer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/preview/chat`, { headers: { host } });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to the upgrade within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('message', (data) => {
      clearTimeout(timer);
      resolve({ message: String(data), ws });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode!, headers: res.headers, body });
      });
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export function isAnswer(value: { message: string; ws: WebSocket } | Answer): value is Answer {
  return 'status' in value;
}

/** A promise and its resolve, to hold a resolver until the test lets it go. */
export function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/**
 * Marks a promise the test awaits later as handled now: should an expectation
 * fail first, its rejection (a socket hang up at teardown) must not take the
 * test process down as an unhandled rejection.
 */
export function later<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true, or throws after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 3000, what = 'the condition'): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`${what} did not hold within ${timeoutMs} ms`);
    await sleep(20);
  }
}
