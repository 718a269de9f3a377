// The child side of messages.ts: announce the port, answer the parent's
// requests with the handlers this child has, and leave with the parent.
import type { ChildMessage, ParentMessage, Replies, Request } from './messages.ts';

export type Handlers = {
  [K in keyof Replies]?: (request: Extract<Request, { type: K }>) => Replies[K] | Promise<Replies[K]>;
};

function send(message: ChildMessage, then: () => void = () => undefined): void {
  process.send?.(message, then);
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/** Starts the child's server with `start` (its port goes to the parent), then answers requests with `handlers`. */
export async function serve(start: () => Promise<number>, handlers: Handlers): Promise<void> {
  if (!process.send) {
    console.error('websocket bench child: must be started by bench/websockets.ts (needs an IPC channel)');
    process.exit(2);
  }
  // Parent gone (even SIGKILLed): the channel closes, and so does the child.
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'exit') {
      process.exit(0);
    }
    const handler = handlers[message.type] as ((request: Request) => unknown) | undefined;
    if (!handler) {
      send({ type: 'failed', message: `this child does not answer '${message.type}'` });
      return;
    }
    Promise.resolve()
      .then(() => handler(message))
      .then(
        (reply) => send({ type: 'reply', reply: reply as Replies[keyof Replies] }),
        (err: unknown) => send({ type: 'failed', message: describe(err) }),
      );
  });
  try {
    send({ type: 'ready', port: await start() });
  } catch (err) {
    // Exit only once the message is out, or the parent sees a bare exit code.
    send({ type: 'failed', message: describe(err) }, () => process.exit(1));
  }
}
