// A proxy child of the idle-WebSocket bench (`proxy.ts <variant> <target>`),
// started with --expose-gc: it measures its own heap after full collections,
// and writes heap snapshots when asked, to see what each WebSocket keeps.
import { readdirSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import { serve } from './child.ts';
import type { MemorySample } from './messages.ts';
import { isWebSocketVariant, startVariant } from './variants.ts';

const [variant, target] = process.argv.slice(2);

const collect = globalThis.gc;
if (!collect) throw new Error('proxy.ts needs --expose-gc');

/**
 * Several full collections with a turn of the event loop between them:
 * objects freed by a weak callback or a finalizer in one go only in the next.
 */
async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    collect!();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function sample(): Promise<MemorySample> {
  await collectGarbage();
  const { heapUsed, heapTotal, rss, external } = process.memoryUsage();
  return { heapUsed, heapTotal, rss, external, fds: readdirSync('/proc/self/fd').length };
}

await serve(
  async () => {
    if (!variant || !target || !isWebSocketVariant(variant)) throw new Error(`usage: proxy.ts <variant> <target-url>; got ${variant}`);
    return startVariant(variant, target);
  },
  {
    sample,
    async snapshot({ file }) {
      await collectGarbage();
      return { file: writeHeapSnapshot(file) };
    },
  },
);
