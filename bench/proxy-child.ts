// Entry point of one proxy child: `proxy-child.ts <variant> <target>`. Each
// variant lives in its own process so its RSS is its own and one variant's
// garbage or JIT state cannot leak into another's numbers.
import { announce } from './ipc/child.ts';
import type { StartVariant } from './variants/listen.ts';

const [variant, target] = process.argv.slice(2);

await announce(async () => {
  if (!variant || !target) throw new Error('usage: proxy-child.ts <variant> <target-url>');
  const module = (await import(new URL(`./variants/${variant}.ts`, import.meta.url).href)) as { start: StartVariant };
  return module.start(target);
});
