// `node bench/profile.ts [--variant honest-proxy] [--scenario small-get] [--seconds 10] [--connections N] [--no-pin]`:
// runs one scenario (load, or transfers one after another) against one variant started with --cpu-prof, then
// prints where its CPU time went. Compare with `--variant hpm` to see the overhead.
import { mkdtempSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closedPort } from './closed-port.ts';
import { startChild, stopAllChildren } from './ipc/parent.ts';
import { runLoad } from './load/autocannon.ts';
import { runTransfers } from './load/transfer.ts';
import { MiB } from './ipc/messages.ts';
import { describePinning, setUpPinning } from './pinning.ts';
import { startProxies } from './proxies.ts';
import { VARIANTS, type Variant } from './results.ts';
import { HOST, SCENARIOS, type LoadScenario, type TransferScenario } from './scenarios.ts';
import { formatProfile, summarizeProfile, type Units } from './profile-summary.ts';

const { values: flags } = parseArgs({
  options: {
    variant: { type: 'string', default: 'honest-proxy' },
    scenario: { type: 'string', default: 'small-get' },
    seconds: { type: 'string', default: '10' },
    top: { type: 'string', default: '25' },
    connections: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
  },
});

const variant = flags.variant as Variant;
if (!VARIANTS.includes(variant) || variant === 'direct') throw new Error(`--variant must be one of ${VARIANTS.filter((v) => v !== 'direct').join(', ')}`);
const seconds = Number(flags.seconds);
if (!(seconds > 0 && seconds <= 120)) throw new Error('--seconds must be in (0, 120]');
const scenario = SCENARIOS.find((s) => s.id === flags.scenario);
if (!scenario) throw new Error(`--scenario must be one of ${SCENARIOS.map((s) => s.id).join(', ')}`);

const connections = flags.connections === undefined ? (scenario.kind === 'load' ? scenario.connections : 0) : Number(flags.connections);
if (scenario.kind === 'load' && !(Number.isInteger(connections) && connections >= 1)) throw new Error('--connections must be a whole number >= 1');
if (scenario.kind === 'transfer' && flags.connections !== undefined) throw new Error(`--connections is for load scenarios; ${scenario.id} moves ${scenario.concurrency} transfer(s) at a time`);

/** Load for `seconds`: the requests it made. */
async function profileLoad(load: LoadScenario, port: number): Promise<Units> {
  const body = load.bodyBytes ? Buffer.alloc(load.bodyBytes, 'p') : undefined;
  const request = { port, host: HOST, method: load.method, path: load.path, body, connections };
  // The profile covers warm-up too; a long measured run keeps startup a small share.
  const warmup = await runLoad({ ...request, seconds: 2 });
  const sample = await runLoad({ ...request, seconds });
  process.stderr.write(`${variant}: ${sample.rps.toFixed(0)} req/s, p50 ${sample.p50} ms, p99 ${sample.p99} ms, non-2xx ${sample.non2xx}, errors ${sample.errors}\n`);
  return { count: warmup.requests + sample.requests, name: 'request', plural: 'requests' };
}

/** Transfers one after another for `seconds`: the MiB they moved. */
async function profileTransfers(transfer: TransferScenario, port: number): Promise<Units> {
  const request = { port, host: HOST, direction: transfer.direction, bytes: transfer.bytes, concurrency: transfer.concurrency, timeoutMs: 60_000 };
  let mib = 0;
  let busySeconds = 0;
  const until = performance.now() + seconds * 1000;
  do {
    const sample = await runTransfers(request);
    mib += (transfer.bytes * transfer.concurrency) / MiB;
    busySeconds += sample.seconds;
  } while (performance.now() < until);
  process.stderr.write(`${variant}: ${mib.toFixed(0)} MiB at ${(mib / busySeconds).toFixed(0)} MiB/s\n`);
  return { count: mib, name: 'MiB', plural: 'MiB' };
}

// Pinned as the measuring runs are: an unpinned proxy shares a core with the
// load and the upstream, which changes how much work each event-loop turn batches.
const pinning = setUpPinning(flags['no-pin']);
let units: Units = { count: 0, name: 'request', plural: 'requests' };
const dir = mkdtempSync(join(os.tmpdir(), 'honest-proxy-profile-'));
try {
  const upstream = await startChild({ name: 'upstream', script: new URL('./upstream.ts', import.meta.url), args: [], logFile: join(dir, 'upstream.log'), cpus: pinning.pinned ? pinning.otherCpus : undefined });
  const target = `http://127.0.0.1:${scenario.kind === 'load' && scenario.deadUpstream ? await closedPort() : upstream.port}`;
  const proxies = await startProxies([variant], target, dir, 'profile', ['--cpu-prof', '--cpu-prof-dir', dir], pinning.pinned ? pinning.proxyCpus : undefined);
  process.stderr.write(`${describePinning(pinning)}\n`);
  try {
    const port = proxies.get(variant)!.port;
    units = scenario.kind === 'load' ? await profileLoad(scenario, port) : await profileTransfers(scenario, port);
  } finally {
    await proxies.stop(); // a graceful exit: that is when --cpu-prof writes the file
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
  process.stdout.write(formatProfile(`${variant}, ${scenario.id}`, summarizeProfile(join(dir, file), Number(flags.top)), units));
  process.stderr.write(`profile: ${join(dir, file)} (open in Chrome DevTools > Performance)\n`);
} finally {
  await stopAllChildren();
}
