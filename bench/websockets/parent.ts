// The parent side of messages.ts: spawn a child with its descriptor limit
// raised, wait (bounded) for it to listen, ask it questions, and make sure it
// is gone afterwards whatever happened.
import { nextMessage, spawnChild, terminate, type SpawnOptions } from '../ipc/process.ts';
import { pinProcess } from '../pinning.ts';
import type { ChildMessage, Replies, Request } from './messages.ts';

export { stopAllChildren } from '../ipc/process.ts';

const READY_TIMEOUT_MS = 20_000;
/** Opening ten thousand WebSockets, or a heap snapshot of them, takes a while. */
const REPLY_TIMEOUT_MS = 180_000;

export interface ChildOptions extends SpawnOptions {
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

export async function startChild(options: ChildOptions): Promise<Child> {
  const child = spawnChild(options);
  const next = <T extends ChildMessage['type']>(type: T, timeoutMs: number, what: string) => nextMessage<ChildMessage, T>(child, options, type, timeoutMs, what);

  try {
    const ready = await next('ready', READY_TIMEOUT_MS, 'start');
    if (options.cpus !== undefined) await pinProcess(child.pid!, options.cpus);
    return {
      name: options.name,
      pid: child.pid!,
      port: ready.port,
      async ask<T extends Request>(request: T) {
        const reply = next('reply', REPLY_TIMEOUT_MS, `'${request.type}'`);
        child.send(request);
        // The child answers each request with the reply of its type (child.ts).
        return (await reply).reply as Replies[T['type']];
      },
      stop: () => terminate(child),
    };
  } catch (err) {
    await terminate(child);
    throw err;
  }
}
