// The parent side of messages.ts: spawn a child with its descriptor limit
// raised, wait (bounded) for it to listen, ask it questions, and make sure it
// is gone afterwards whatever happened.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { pinProcess } from '../pinning.ts';
import type { ChildMessage, ParentMessage, Replies, Request } from './messages.ts';

const READY_TIMEOUT_MS = 20_000;
/** Opening ten thousand WebSockets, or a heap snapshot of them, takes a while. */
const REPLY_TIMEOUT_MS = 180_000;
const EXIT_GRACE_MS = 3_000;

export interface ChildOptions {
  name: string;
  script: URL;
  args: string[];
  logFile: string;
  execArgv?: string[];
  /** The soft descriptor limit the child runs with (`ulimit -n`, at most the hard limit). */
  fileLimit: number;
  /** A taskset core list, applied to every thread once the child listens. */
  cpus?: string;
}

export interface Child {
  name: string;
  pid: number;
  port: number;
  ask<T extends Request>(request: T): Promise<Replies[T['type']]>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();

function logTail(file: string): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text ? `\n--- last output of the child ---\n${text.slice(-1500)}` : '';
  } catch {
    return '';
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function terminate(child: ChildProcess): Promise<void> {
  const grace = (ms: number) => Promise.race([exited(child), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
  if (child.connected) child.send({ type: 'exit' } satisfies ParentMessage);
  await grace(EXIT_GRACE_MS);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await grace(EXIT_GRACE_MS);
  }
  running.delete(child);
}

export async function stopAllChildren(): Promise<void> {
  await Promise.all([...running].map(terminate));
}

/**
 * Node cannot set its own rlimits, so the child starts through sh: `ulimit
 * -n` raises the soft limit, and `exec` leaves the same process (same pid,
 * same IPC descriptor, named in NODE_CHANNEL_FD) to node.
 */
export async function startChild(options: ChildOptions): Promise<Child> {
  const log = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    const command = [process.execPath, ...(options.execArgv ?? []), options.script.pathname, ...options.args];
    child = spawn('/bin/sh', ['-c', 'ulimit -n "$0" && exec "$@"', String(options.fileLimit), ...command], {
      stdio: ['ignore', log, log, 'ipc'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
  } finally {
    closeSync(log);
  }
  running.add(child);
  child.on('error', () => undefined);

  function next(type: 'ready' | 'reply', timeoutMs: number, what: string): Promise<ChildMessage> {
    return new Promise((resolve, reject) => {
      const onMessage = (message: ChildMessage) => {
        if (message.type === 'failed') {
          cleanup();
          reject(new Error(`${options.name}: ${what} failed:\n${message.message}`));
        } else if (message.type === type) {
          cleanup();
          resolve(message);
        }
      };
      const onExit = (code: number | null, signal: string | null) => {
        cleanup();
        reject(new Error(`${options.name} exited (code ${code}, signal ${signal}) during ${what}${logTail(options.logFile)}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${options.name}: no answer to ${what} within ${timeoutMs} ms; see ${options.logFile}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  }

  try {
    const ready = await next('ready', READY_TIMEOUT_MS, 'start');
    if (options.cpus !== undefined) await pinProcess(child.pid!, options.cpus);
    return {
      name: options.name,
      pid: child.pid!,
      port: (ready as Extract<ChildMessage, { type: 'ready' }>).port,
      async ask<T extends Request>(request: T) {
        const reply = next('reply', REPLY_TIMEOUT_MS, `'${request.type}'`);
        child.send(request);
        // The child answers each request with the reply of its type (child.ts).
        return ((await reply) as Extract<ChildMessage, { type: 'reply' }>).reply as Replies[T['type']];
      },
      stop: () => terminate(child),
    };
  } catch (err) {
    await terminate(child);
    throw err;
  }
}
