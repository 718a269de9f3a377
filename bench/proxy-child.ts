// Entry point of one proxy child: `proxy-child.ts <variant> <target>`. Each
// variant lives in its own process so its RSS and CPU time are its own and one
// variant's garbage or JIT state cannot leak into another's numbers.
import diagnosticsChannel from 'node:diagnostics_channel';
import http from 'node:http';
import { announce, reportPool } from './ipc/child.ts';
import type { PoolInfo } from './ipc/messages.ts';
import type { StartVariant } from './variants/listen.ts';

const [variant, target] = process.argv.slice(2);

/** What a node:http client request says about the pool it came from. */
function describePool(request: http.ClientRequest): PoolInfo {
  const agent = (request as http.ClientRequest & { agent?: http.Agent | false }).agent;
  const close = /\bclose\b/i.test(String(request.getHeader('connection') ?? ''));
  const note = close ? 'sends `Connection: close` upstream: a new upstream connection per request' : undefined;
  if (!(agent instanceof http.Agent)) return { client: 'node:http, no agent', keepAlive: false, maxSockets: null, maxFreeSockets: null, note: note ?? 'no agent: a new upstream connection per request' };
  const finite = (n: number) => (Number.isFinite(n) ? n : null);
  return {
    client: `node:http Agent${agent === http.globalAgent ? ' (http.globalAgent)' : ''}`,
    keepAlive: (agent as http.Agent & { keepAlive?: boolean }).keepAlive === true,
    maxSockets: finite(agent.maxSockets),
    // Only kept-alive sockets are ever free; without keepAlive the cap means nothing.
    maxFreeSockets: finite(agent.maxFreeSockets),
    ...(note && { note }),
  };
}

// The first upstream request (a warm-up one) tells how this variant pools its
// upstream connections; then the subscription goes, so measured requests pay nothing for it.
const onRequest = (message: unknown) => {
  diagnosticsChannel.unsubscribe('http.client.request.start', onRequest);
  reportPool(describePool((message as { request: http.ClientRequest }).request));
};
diagnosticsChannel.subscribe('http.client.request.start', onRequest);

await announce(async () => {
  if (!variant || !target) throw new Error('usage: proxy-child.ts <variant> <target-url>');
  const module = (await import(new URL(`./variants/${variant}.ts`, import.meta.url).href)) as { start: StartVariant };
  return module.start(target);
});
