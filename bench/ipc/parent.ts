// The parent side: fork a child (pinned to given cores, if asked), wait
// (bounded) for it to listen, ask it for RSS marks and CPU usage, and make
// sure it is gone afterwards whatever happened.
import { pinProcess } from '../pinning.ts';
import type { ChildMessage, ParentMessage, PoolInfo } from './messages.ts';
import { exited, logTail, nextMessage, spawnChild, terminate, withTimeout, type SpawnOptions } from './process.ts';

export { stopAllChildren } from './process.ts';

const READY_TIMEOUT_MS = 20_000;
const REPLY_TIMEOUT_MS = 5_000;

export interface ChildOptions extends Omit<SpawnOptions, 'fileLimit'> {
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

export async function startChild(options: ChildOptions): Promise<Child> {
  const child = spawnChild(options);
  const next = <T extends ChildMessage['type']>(type: T, timeoutMs: number) => nextMessage<ChildMessage, T>(child, options, type, timeoutMs, `'${type}'`);

  const crashReport = () =>
    child.exitCode === null && child.signalCode === null ? '' : `${options.name} exited (code ${child.exitCode}, signal ${child.signalCode})${logTail(options.logFile)}`;

  function request<T extends ChildMessage['type']>(message: ParentMessage, type: T): Promise<Extract<ChildMessage, { type: T }>> {
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
