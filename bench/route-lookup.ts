// A micro check of the route lookup alone: `node bench/route-lookup.ts`.
// A warm route cache must cost about what a record does: answered without a
// promise, and with nothing allocated per hit (no young-generation GC while
// millions of hits run). An uncached async route function is shown for scale.
import http from 'node:http';
import net from 'node:net';
import { PerformanceObserver } from 'node:perf_hooks';
import { cachedRoutes, portHostRoutes } from '../src/index.ts';
import { compileRoutes, type RouteResolver } from '../src/routes/table.ts';

const HOST = '3000-demo.localhost';
const HITS = 3_000_000;
const req = new http.IncomingMessage(new net.Socket());
req.headers.host = HOST;

let scavenges = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if ((entry as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
}).observe({ entryTypes: ['gc'] });
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

async function hits(name: string, resolve: RouteResolver): Promise<void> {
  await resolve(req, HOST);
  for (let i = 0; i < 200_000; i++) resolve(req, HOST);
  await settle();
  scavenges = 0;
  let last: unknown;
  const started = process.hrtime.bigint();
  for (let i = 0; i < HITS; i++) last = resolve(req, HOST);
  const ns = Number(process.hrtime.bigint() - started) / HITS;
  await settle();
  console.log(`${name.padEnd(28)} ${ns.toFixed(1).padStart(7)} ns  ${last instanceof Promise ? 'a promise' : 'synchronous'}  ${scavenges} scavenges in ${HITS / 1e6}M`);
}

await hits('record', compileRoutes({ [HOST]: 'http://127.0.0.1:3000' }));
await hits('cachedRoutes, warm', compileRoutes(cachedRoutes(async () => 'http://127.0.0.1:3000', { key: (r) => r.headers.host })));
await hits('portHostRoutes cache, warm', compileRoutes(portHostRoutes({ domain: 'localhost', resolve: async (_id, port) => `http://127.0.0.1:${port}`, cache: {} })));

const uncached = compileRoutes(async () => 'http://127.0.0.1:3000');
const N = 300_000;
const started = process.hrtime.bigint();
for (let i = 0; i < N; i++) await uncached(req, HOST);
console.log(`${'async function, uncached'.padEnd(28)} ${(Number(process.hrtime.bigint() - started) / N).toFixed(1).padStart(7)} ns  awaited`);
process.exit(0);
