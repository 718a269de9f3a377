// `node bench/profile.ts [--variant honest-proxy] [--scenario small-get] [--seconds 10] [--connections N] [--no-pin]`:
// runs one load scenario against one variant started with --cpu-prof, then
// prints where its CPU time went. Compare with `--variant hpm` to see the overhead.
import { mkdtempSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closedPort } from './closed-port.ts';
import { startChild, stopAllChildren } from './ipc/parent.ts';
import { runLoad } from './load/autocannon.ts';
import { describePinning, setUpPinning } from './pinning.ts';
import { startProxies } from './proxies.ts';
import { VARIANTS, type Variant } from './results.ts';
import { HOST, SCENARIOS, type LoadScenario } from './scenarios.ts';
import { formatProfile, summarizeProfile } from './profile-summary.ts';

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
const loadScenarios = SCENARIOS.filter((s): s is LoadScenario => s.kind === 'load');
const scenario = loadScenarios.find((s) => s.id === flags.scenario);
if (!scenario) throw new Error(`--scenario must be one of ${loadScenarios.map((s) => s.id).join(', ')}`);

const connections = flags.connections === undefined ? scenario.connections : Number(flags.connections);
if (!(Number.isInteger(connections) && connections >= 1)) throw new Error('--connections must be a whole number >= 1');

// Pinned as the measuring runs are: an unpinned proxy shares a core with the
// load and the upstream, which changes how much work each event-loop turn batches.
const pinning = setUpPinning(flags['no-pin']);
let requests = 0;
const dir = mkdtempSync(join(os.tmpdir(), 'honest-proxy-profile-'));
try {
  const upstream = await startChild({ name: 'upstream', script: new URL('./upstream.ts', import.meta.url), args: [], logFile: join(dir, 'upstream.log'), cpus: pinning.pinned ? pinning.otherCpus : undefined });
  const target = `http://127.0.0.1:${scenario.deadUpstream ? await closedPort() : upstream.port}`;
  const proxies = await startProxies([variant], target, dir, 'profile', ['--cpu-prof', '--cpu-prof-dir', dir], pinning.pinned ? pinning.proxyCpus : undefined);
  process.stderr.write(`${describePinning(pinning)}\n`);
  try {
    const body = scenario.bodyBytes ? Buffer.alloc(scenario.bodyBytes, 'p') : undefined;
    const load = { port: proxies.get(variant)!.port, host: HOST, method: scenario.method, path: scenario.path, body, connections };
    // The profile covers warm-up too; a long measured run keeps startup a small share.
    const warmup = await runLoad({ ...load, seconds: 2 });
    const sample = await runLoad({ ...load, seconds });
    requests = warmup.requests + sample.requests;
    process.stderr.write(`${variant}: ${sample.rps.toFixed(0)} req/s, p50 ${sample.p50} ms, p99 ${sample.p99} ms, non-2xx ${sample.non2xx}, errors ${sample.errors}\n`);
  } finally {
    await proxies.stop(); // a graceful exit: that is when --cpu-prof writes the file
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
  process.stdout.write(formatProfile(`${variant}, ${scenario.id}`, summarizeProfile(join(dir, file), Number(flags.top)), requests));
  process.stderr.write(`profile: ${join(dir, file)} (open in Chrome DevTools > Performance)\n`);
} finally {
  await stopAllChildren();
}
