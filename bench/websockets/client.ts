// The client of the idle-WebSocket bench: opens WebSockets through the proxy
// (`client.ts <proxy port> <host>`) in batches, so the proxy's listen backlog
// and the upstream's never overflow and no handshake times out, and keeps
// them open and silent until asked to close them.
import { WebSocket } from 'ws';
import { serve } from './child.ts';

/** Handshakes in flight at once. */
const BATCH = 200;
const HANDSHAKE_TIMEOUT_MS = 10_000;

const [port, host] = process.argv.slice(2);
const held: WebSocket[] = [];

/** Resolves with undefined once open, or with why not. */
function openOne(): Promise<string | undefined> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/idle`, { headers: { host: host! }, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
    ws.once('open', () => {
      held.push(ws);
      resolve(undefined);
    });
    ws.once('error', (err) => resolve(err.message));
    // A later error (the proxy going away) must not take the client down.
    ws.on('error', () => undefined);
  });
}

async function openMany(count: number): Promise<{ open: number; failed: number; firstError: string | undefined }> {
  let failed = 0;
  let firstError: string | undefined;
  for (let done = 0; done < count; ) {
    const batch = Math.min(BATCH, count - done);
    const results = await Promise.all(Array.from({ length: batch }, openOne));
    for (const error of results) {
      if (error === undefined) continue;
      failed++;
      firstError ??= error;
    }
    done += batch;
  }
  return { open: held.length, failed, firstError };
}

function closeAll(): Promise<{ closed: number }> {
  const closing = held.splice(0).map(
    (ws) =>
      new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close(1000);
      }),
  );
  return Promise.all(closing).then(() => ({ closed: closing.length }));
}

await serve(async () => Number(port), {
  open: ({ count }) => openMany(count),
  closeAll,
});
