// A fault-injection soak: many requests over keep-alive through a proxy in its
// own process, against an upstream that misbehaves on purpose, from a client
// that sometimes hangs up. Shared by the jest test (a short run) and
// `npm run soak` (a long one, with its figures printed).
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import type { Socket } from 'node:net';
import type { SoakChildMessage } from './proxy-child.ts';

/** What the upstream does with a request, chosen by the client and named in its path. */
export const FAULTS = ['ok', 'drip', 'reset-mid-body', 'hang', 'garbage-status', 'early-close'] as const;
export type Fault = (typeof FAULTS)[number];
// Mostly healthy traffic, as in life; every fault often enough to matter.
const WEIGHTS: Record<Fault, number> = { ok: 10, drip: 2, 'reset-mid-body': 2, hang: 1, 'garbage-status': 2, 'early-close': 2 };

export interface SoakOptions {
  requests: number;
  concurrency: number;
  /** Share of requests the client abandons part way. */
  clientAbortRate: number;
  seed: number;
}

export interface SoakReport {
  requests: number;
  elapsedMs: number;
  faults: Record<string, number>;
  statuses: Record<string, number>;
  clientAborts: number;
  /** Each a broken promise: the run passes when this is empty. */
  violations: string[];
  proxyAlive: boolean;
  fds: { before: number; after: number; settledMs: number };
  heapUsedMiB: { afterWarmUp: number; atEnd: number };
  proxyRecords: Record<string, number>;
}

/** A small seeded generator (mulberry32), so a failing run can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface FaultyUpstream {
  url: string;
  violations: string[];
  close(): Promise<void>;
}

/** The misbehaving upstream. It also checks what reached it: no complete body may differ from what was sent, no POST may arrive twice. */
async function startFaultyUpstream(): Promise<FaultyUpstream> {
  const violations: string[] = [];
  const postsSeen = new Set<string>();
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const [, fault, id] = (req.url ?? '').split('/') as [string, Fault, string];
    if (req.method === 'POST') {
      if (postsSeen.has(id)) violations.push(`POST ${id} reached the upstream twice`);
      postsSeen.add(id);
    }
    if (fault === 'early-close') {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const declared = req.headers['x-body-sha256'];
      if (declared !== undefined && declared !== sha256(body)) violations.push(`${req.method} ${id}: a complete body that is not the one sent (${body.length} bytes)`);
      const answer = Buffer.from(JSON.stringify({ sha: sha256(body) }));
      switch (fault) {
        case 'ok':
          res.end(answer);
          return;
        case 'drip': {
          res.writeHead(200, { 'content-length': answer.length });
          let sent = 0;
          const step = Math.ceil(answer.length / 4);
          const timer = setInterval(() => {
            res.write(answer.subarray(sent, sent + step));
            sent += step;
            if (sent >= answer.length) {
              clearInterval(timer);
              res.end();
            }
          }, 5);
          res.once('close', () => clearInterval(timer));
          return;
        }
        case 'reset-mid-body':
          res.writeHead(200, { 'content-length': 1000 });
          res.write(Buffer.alloc(100, 'x'), () => req.socket.resetAndDestroy());
          return;
        case 'hang':
          return;
        case 'garbage-status':
          req.socket.end('HTTP/1.1 000 Nonsense\r\ncontent-length: 2\r\n\r\nhi');
          return;
      }
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    violations,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

interface ProxyChild {
  port: number;
  alive(): boolean;
  stats(): Promise<Extract<SoakChildMessage, { type: 'stats' }>>;
  stop(): void;
}

async function startProxyChild(upstreamUrl: string): Promise<ProxyChild> {
  const child = fork(path.join(import.meta.dirname, 'proxy-child.ts'), [upstreamUrl], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let exited = false;
  child.once('exit', () => (exited = true));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`proxy child exited with ${code} before it listened`)));
    child.on('message', (message: SoakChildMessage) => {
      if (message.type === 'ready') resolve(message.port);
    });
  });
  return {
    port,
    alive: () => !exited,
    stats: () =>
      new Promise((resolve, reject) => {
        if (exited) return reject(new Error('proxy child has exited'));
        const onMessage = (message: SoakChildMessage) => {
          if (message.type !== 'stats') return;
          child.off('message', onMessage);
          resolve(message);
        };
        child.on('message', onMessage);
        child.send({ type: 'stats' });
      }),
    stop: () => child.kill(),
  };
}

interface Outcome {
  status?: number;
  complete: boolean;
  body: string;
  error?: string;
}

function send(agent: http.Agent, port: number, method: string, requestPath: string, body: Buffer | undefined, abortAfterMs: number | undefined): Promise<Outcome> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      resolve(outcome);
    };
    const headers: Record<string, string> = { host: 'soak.localhost' };
    if (body) headers['x-body-sha256'] = sha256(body);
    const req = http.request({ agent, port, host: '127.0.0.1', method, path: requestPath, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => done({ status: res.statusCode, complete: res.complete, body: text }));
      res.on('error', (err: NodeJS.ErrnoException) => done({ status: res.statusCode, complete: false, body: text, error: err.code ?? err.message }));
      res.on('close', () => done({ status: res.statusCode, complete: res.complete, body: text }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => done({ complete: false, body: '', error: err.code ?? err.message }));
    if (abortAfterMs !== undefined) setTimeout(() => req.destroy(), abortAfterMs);
    req.end(body);
  });
}

/** Broken promises in one exchange, judged by what the fault allows. */
function judge(fault: Fault, method: string, sentSha: string, outcome: Outcome, aborted: boolean): string | undefined {
  const describe = `${method} ${fault}: ${outcome.status ?? 'no response'}${outcome.complete ? ' complete' : ' incomplete'}${outcome.error ? ` (${outcome.error})` : ''}`;
  if (aborted) {
    // The client left: whatever it got, a complete success must be the real one.
    if (outcome.status === 200 && outcome.complete && (fault === 'ok' || fault === 'drip') && JSON.parse(outcome.body).sha !== sentSha) return describe;
    return undefined;
  }
  switch (fault) {
    case 'ok':
    case 'drip':
      return outcome.status === 200 && outcome.complete && JSON.parse(outcome.body).sha === sentSha ? undefined : describe;
    case 'reset-mid-body':
      // A 200 cut short, or a 502 if the reset won the race to the proxy; never a complete 200.
      if (outcome.status === 200 && !outcome.complete) return undefined;
      return outcome.status === 502 && outcome.complete ? undefined : describe;
    case 'hang':
      return outcome.status === 504 && outcome.complete ? undefined : describe;
    case 'garbage-status':
    case 'early-close':
      return outcome.status === 502 && outcome.complete ? undefined : describe;
  }
}

function pickFault(next: () => number): Fault {
  const total = FAULTS.reduce((sum, fault) => sum + WEIGHTS[fault], 0);
  let roll = next() * total;
  for (const fault of FAULTS) {
    roll -= WEIGHTS[fault];
    if (roll < 0) return fault;
  }
  return 'ok';
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const next = random(options.seed);
  const upstream = await startFaultyUpstream();
  const proxy = await startProxyChild(upstream.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const report: SoakReport = {
    requests: 0,
    elapsedMs: 0,
    faults: {},
    statuses: {},
    clientAborts: 0,
    violations: [],
    proxyAlive: true,
    fds: { before: 0, after: 0, settledMs: 0 },
    heapUsedMiB: { afterWarmUp: 0, atEnd: 0 },
    proxyRecords: {},
  };
  const started = Date.now();
  try {
    report.fds.before = (await proxy.stats()).fds;
    const warmUp = Math.min(200, Math.floor(options.requests / 5));
    let issued = 0;
    const worker = async () => {
      while (issued < options.requests && proxy.alive()) {
        const n = issued++;
        if (n === warmUp) report.heapUsedMiB.afterWarmUp = mib((await proxy.stats()).heapUsed);
        const fault = pickFault(next);
        const method = next() < 0.5 ? 'GET' : 'POST';
        const body = method === 'POST' ? Buffer.alloc(Math.floor(next() * 64 * 1024), n % 251) : undefined;
        const aborted = next() < options.clientAbortRate;
        const outcome = await send(agent, proxy.port, method, `/${fault}/${n}`, body, aborted ? Math.floor(next() * 20) : undefined);
        report.requests++;
        report.faults[fault] = (report.faults[fault] ?? 0) + 1;
        const status = outcome.status === undefined ? (outcome.error ?? 'none') : String(outcome.status);
        report.statuses[status] = (report.statuses[status] ?? 0) + 1;
        if (aborted) report.clientAborts++;
        const broken = judge(fault, method, sha256(body ?? Buffer.alloc(0)), outcome, aborted);
        if (broken) report.violations.push(`#${n} ${broken}`);
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    report.elapsedMs = Date.now() - started;
    agent.destroy();

    // Back to baseline within a few seconds: client sockets close at once,
    // pooled upstream sockets when their idle time (4 s) runs out.
    const settleStart = Date.now();
    let stats = await proxy.stats();
    while (stats.fds > report.fds.before && Date.now() - settleStart < 8_000) {
      await delay(250);
      stats = await proxy.stats();
    }
    report.fds.after = stats.fds;
    report.fds.settledMs = Date.now() - settleStart;
    report.heapUsedMiB.atEnd = mib(stats.heapUsed);
    report.proxyRecords = stats.records;
  } catch (err) {
    report.violations.push(`soak aborted: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    report.proxyAlive = proxy.alive();
    if (!report.proxyAlive) report.violations.push('the proxy process died');
    report.violations.push(...upstream.violations);
    agent.destroy();
    proxy.stop();
    await upstream.close();
  }
  return report;
}
