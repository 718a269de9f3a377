// The proxy under soak, in a process of its own: a crash shows as an exit, and
// its file descriptors and heap are its own. `proxy-child.ts <upstream-url>`.
import http from 'node:http';
import { readdirSync } from 'node:fs';
import winston from 'winston';
import Transport from 'winston-transport';
import { createProxy } from '../../src/index.ts';

export type SoakChildMessage =
  | { type: 'ready'; port: number }
  | { type: 'stats'; fds: number; heapUsed: number; records: Record<string, number>; openSockets: number };

/** Counts records by level: the soak reads how many errors (our own bugs) were logged. */
class CountingTransport extends Transport {
  readonly counts: Record<string, number> = {};
  override log(info: { level: string }, done: () => void): void {
    this.counts[info.level] = (this.counts[info.level] ?? 0) + 1;
    done();
  }
}

const upstream = process.argv[2];
if (!upstream || !process.send) throw new Error('usage: fork(proxy-child.ts, [upstream-url]) with an IPC channel');
process.on('disconnect', () => process.exit(0));

const counting = new CountingTransport();
const proxy = createProxy({
  routes: { 'soak.localhost': upstream },
  logger: winston.createLogger({ level: 'debug', transports: [counting] }),
  timeouts: { connect: 1_000, response: 300, idle: 1_000 },
  bodyLimit: '1mb',
});
const server = http.createServer(proxy);
let openSockets = 0;
server.on('connection', (socket) => {
  openSockets++;
  socket.once('close', () => openSockets--);
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.send!({ type: 'ready', port } satisfies SoakChildMessage);
});

const gc = (globalThis as { gc?: () => void }).gc;
process.on('message', (message: { type: string }) => {
  if (message.type !== 'stats') return;
  gc?.();
  process.send!({
    type: 'stats',
    fds: readdirSync('/proc/self/fd').length,
    heapUsed: process.memoryUsage().heapUsed,
    records: counting.counts,
    openSockets,
  } satisfies SoakChildMessage);
});
