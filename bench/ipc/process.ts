// What every bench child process has in common, whatever it is asked: start
// it with its output in a file, wait (bounded) for a message of a given type,
// and make sure it is gone afterwards whatever happened. The questions are
// each bench's own (ipc/parent.ts, websockets/parent.ts).
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

const EXIT_GRACE_MS = 3_000;

export interface SpawnOptions {
  /** Shown in errors and used to name the log file. */
  name: string;
  script: URL;
  args: string[];
  /** Where the child's stdout and stderr go: a file, so a chatty child never blocks on a full pipe or costs the load generator CPU. */
  logFile: string;
  execArgv?: string[];
  /** The soft descriptor limit the child runs with (`ulimit -n`, at most the hard limit); the parent's when unset. */
  fileLimit?: number;
}

/** Every message a child sends has a type; `failed` carries why it could not go on. */
export type TypedMessage = { type: string } | { type: 'failed'; message: string };

const running = new Set<ChildProcess>();

/** The end of a child's log, so a crash explains itself in the results even after the logs are gone. */
export function logTail(file: string, chars = 1500): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text ? `\n--- last output of the child ---\n${text.slice(-chars)}` : '';
  } catch {
    return '';
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Asks politely (so a --cpu-prof child writes its profile), then SIGKILLs. */
export async function terminate(child: ChildProcess): Promise<void> {
  try {
    if (child.connected) child.send({ type: 'exit' });
    await withTimeout(exited(child), EXIT_GRACE_MS, 'exit');
  } catch {
    child.kill('SIGKILL');
    await withTimeout(exited(child), EXIT_GRACE_MS, 'SIGKILL').catch(() => undefined);
  } finally {
    running.delete(child);
  }
}

/** For signal handlers and the orchestrators' outermost finally. */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...running].map(terminate));
}

/**
 * Starts a node child with an IPC channel. With `fileLimit` it starts through
 * sh: Node cannot set its own rlimits, `ulimit -n` raises the soft limit, and
 * `exec` leaves the same process (same pid, same IPC descriptor, named in
 * NODE_CHANNEL_FD) to node.
 */
export function spawnChild(options: SpawnOptions): ChildProcess {
  const log = openSync(options.logFile, 'a');
  const execArgv = options.execArgv ?? [];
  // Production is how these servers run; it also keeps Express from putting stack traces into error pages.
  const settings = { stdio: ['ignore', log, log, 'ipc'] as const, env: { ...process.env, NODE_ENV: 'production' } };
  let child: ChildProcess;
  try {
    if (options.fileLimit === undefined) child = fork(options.script, options.args, { ...settings, stdio: [...settings.stdio], execArgv });
    else {
      const command = [process.execPath, ...execArgv, options.script.pathname, ...options.args];
      child = spawn('/bin/sh', ['-c', 'ulimit -n "$0" && exec "$@"', String(options.fileLimit), ...command], { ...settings, stdio: [...settings.stdio] });
    }
  } finally {
    closeSync(log); // the child holds its own copy of the descriptor
  }
  running.add(child);
  // A send racing the child's exit emits 'error'; the pending reply already
  // fails through 'exit', so this only keeps the event from crashing the bench.
  child.on('error', () => undefined);
  return child;
}

/** The child's next message of `type` (one question is in flight at a time, so no ids); rejects on `failed`, exit or timeout. */
export function nextMessage<M extends TypedMessage, T extends M['type']>(child: ChildProcess, options: SpawnOptions, type: T, timeoutMs: number, what: string): Promise<Extract<M, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: M) => {
      if (message.type === 'failed') {
        cleanup();
        reject(new Error(`${options.name}: ${what} failed:\n${(message as { message: string }).message}`));
      } else if (message.type === type) {
        cleanup();
        resolve(message as Extract<M, { type: T }>);
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
