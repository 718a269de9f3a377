// The parent side: fork a child (pinned to given cores, if asked), wait
// (bounded) for it to listen, ask it for RSS marks and CPU usage, and make
// sure it is gone afterwards whatever happened.
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { pinProcess } from '../pinning.ts';
import type { ChildMessage, ParentMessage, PoolInfo } from './messages.ts';

const READY_TIMEOUT_MS = 20_000;
const REPLY_TIMEOUT_MS = 5_000;
const EXIT_GRACE_MS = 3_000;

export interface ChildOptions {
  /** Shown in errors and used to name the log file. */
  name: string;
  script: URL;
  args: string[];
  /** Where the child's stdout and stderr go: a file, so a chatty child never blocks on a full pipe or costs the load generator CPU. */
  logFile: string;
  execArgv?: string[];
  /**
   * A taskset core list ("1", "0-2"): once the child listens, every one of its
   * threads is pinned there, and threads it starts later inherit that. Not
   * from the start, so that children starting together (and compiling) can
   * use every core; nothing is measured before they are ready.
   */
  cpus?: string;
}

/** `process.cpuUsage()` of a child plus what its servers accepted, at one instant. */
export interface Usage {
  /** user + system, µs, since the child started. */
  cpuMicros: number;
  /** Main-thread GC pauses, µs, since the child started. */
  gcMicros: number;
  accepted: number;
  pool: PoolInfo | null;
}

export interface Child {
  name: string;
  pid: number;
  port: number;
  logFile: string;
  /** Resets the child's peak RSS to its current RSS and returns that baseline. */
  mark(): Promise<number>;
  /** Peak RSS since the last mark. */
  peak(): Promise<number>;
  usage(): Promise<Usage>;
  /** Empty while the child runs; else how it ended and the end of its output. */
  crashReport(): string;
  /** Resolves once the child has exited, or after `ms` if it has not. */
  settle(ms: number): Promise<void>;
  stop(): Promise<void>;
}

type Reply<T extends ChildMessage['type']> = Extract<ChildMessage, { type: T }>;

const running = new Set<ChildProcess>();

/** The end of a child's log, so a crash explains itself in the results even after the logs are gone. */
function logTail(file: string, chars = 1500): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text ? `\n--- last output of the child ---\n${text.slice(-chars)}` : '';
  } catch {
    return '';
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Asks politely (so a --cpu-prof child writes its profile), then SIGKILLs. */
async function terminate(child: ChildProcess): Promise<void> {
  try {
    if (child.connected) child.send({ type: 'exit' } satisfies ParentMessage);
    await withTimeout(exited(child), EXIT_GRACE_MS, 'exit');
  } catch {
    child.kill('SIGKILL');
    await withTimeout(exited(child), EXIT_GRACE_MS, 'SIGKILL').catch(() => undefined);
  } finally {
    running.delete(child);
  }
}

/** For signal handlers and the orchestrator's outermost finally. */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...running].map(terminate));
}

export async function startChild(options: ChildOptions): Promise<Child> {
  const log = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = fork(options.script, options.args, {
      stdio: ['ignore', log, log, 'ipc'],
      execArgv: options.execArgv ?? [],
      // Production is how these servers run; it also keeps Express from
      // putting stack traces into error pages.
      env: { ...process.env, NODE_ENV: 'production' },
    });
  } finally {
    closeSync(log); // the child holds its own copy of the descriptor
  }
  running.add(child);
  // A send racing the child's exit emits 'error'; the pending reply already
  // fails through 'exit', so this only keeps the event from crashing the bench.
  child.on('error', () => undefined);

  function next<T extends ChildMessage['type']>(type: T, timeoutMs: number): Promise<Reply<T>> {
    return new Promise<Reply<T>>((resolve, reject) => {
      const onMessage = (message: ChildMessage) => {
        if (message.type === 'failed') {
          cleanup();
          reject(new Error(`${options.name} failed to start:\n${message.message}`));
        } else if (message.type === type) {
          cleanup();
          resolve(message as Reply<T>);
        }
      };
      const onExit = (code: number | null, signal: string | null) => {
        cleanup();
        reject(new Error(`${options.name} exited (code ${code}, signal ${signal})${logTail(options.logFile)}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${options.name}: no '${type}' within ${timeoutMs} ms; see ${options.logFile}`));
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

  const crashReport = () =>
    child.exitCode === null && child.signalCode === null ? '' : `${options.name} exited (code ${child.exitCode}, signal ${child.signalCode})${logTail(options.logFile)}`;

  function request<T extends ChildMessage['type']>(message: ParentMessage, type: T): Promise<Reply<T>> {
    if (!child.connected) return Promise.reject(new Error(crashReport() || `${options.name} has closed its IPC channel`));
    const reply = next(type, REPLY_TIMEOUT_MS);
    child.send(message);
    return reply;
  }

  try {
    const ready = await next('ready', READY_TIMEOUT_MS);
    if (options.cpus !== undefined) await pinProcess(child.pid!, options.cpus);
    return {
      name: options.name,
      pid: child.pid!,
      port: ready.port,
      logFile: options.logFile,
      mark: async () => (await request({ type: 'mark' }, 'marked')).rss,
      peak: async () => (await request({ type: 'peak' }, 'peak')).peakRss,
      usage: async () => {
        const u = await request({ type: 'usage' }, 'usage');
        return { cpuMicros: u.userMicros + u.systemMicros, gcMicros: u.gcMillis * 1000, accepted: u.accepted, pool: u.pool };
      },
      crashReport,
      settle: (ms) => withTimeout(exited(child), ms, 'settle').catch(() => undefined),
      stop: () => terminate(child),
    };
  } catch (err) {
    await terminate(child);
    throw err;
  }
}
