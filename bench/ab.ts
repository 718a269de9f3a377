// `node bench/ab.ts --variants hpm,honest-proxy[,...] [--scenario small-get] [--connections N] [--rounds 24] [--seconds 1] [--control]`:
// a paired comparison for questions smaller than the full run can settle.
//
// On this kind of machine one variant's CPU per request moves by 15-40%
// between 3 s windows, more after it has sat idle while eight others were
// measured, so a 5-round full run cannot tell 5% apart. Here the variants
// (all running, pinned as in the full run) take turns in short windows with
// no idle gaps, the order reversing each round, and every round gives a ratio
// of two windows a second or two apart: drift lands on both sides of it. The
// median of those ratios, with its quartiles, is the answer; the first
// variant is the reference.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closedPort } from './closed-port.ts';
import { startChild, stopAllChildren, type Child } from './ipc/parent.ts';
import { runLoad } from './load/autocannon.ts';
import { describePinning, setUpPinning } from './pinning.ts';
import { startProxies } from './proxies.ts';
import { median, NOT_ON_ERROR_PATH, VARIANTS, type Variant } from './results.ts';
import { HOST, SCENARIOS, type LoadScenario } from './scenarios.ts';

const { values: flags } = parseArgs({
  options: {
    variants: { type: 'string' },
    scenario: { type: 'string', default: 'small-get' },
    rounds: { type: 'string', default: '24' },
    seconds: { type: 'string', default: '1' },
    // Fewer clients than hpm's pool keeps free (64): no connection churn on hpm's side to flatter the ratio.
    connections: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    // Also run the first variant in a second process (an A/A control).
    control: { type: 'boolean', default: false },
  },
});

const variants = (flags.variants ?? '').split(',').filter(Boolean) as Variant[];
const unknown = variants.filter((v) => !VARIANTS.includes(v) || v === 'direct');
if (variants.length < 2 || unknown.length) throw new Error(`--variants takes two or more of ${VARIANTS.filter((v) => v !== 'direct').join(', ')}${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`);
const rounds = Number(flags.rounds);
const seconds = Number(flags.seconds);
if (!(Number.isInteger(rounds) && rounds >= 4)) throw new Error('--rounds must be a whole number >= 4');
if (!(seconds > 0 && seconds <= 30)) throw new Error('--seconds must be in (0, 30]');
const scenario = SCENARIOS.find((s): s is LoadScenario => s.kind === 'load' && s.id === flags.scenario);
if (!scenario) throw new Error(`--scenario must be one of ${SCENARIOS.filter((s) => s.kind === 'load').map((s) => s.id).join(', ')}`);
const unanswerable = variants.filter((v) => scenario.deadUpstream && NOT_ON_ERROR_PATH.includes(v));
if (unanswerable.length) throw new Error(`${unanswerable.join(', ')} cannot answer ${scenario.id}: it has no error response of its own`);
const connections = flags.connections === undefined ? scenario.connections : Number(flags.connections);
if (!(Number.isInteger(connections) && connections >= 1)) throw new Error('--connections must be a whole number >= 1');

function quartile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.round(q * (sorted.length - 1))]!;
}

const pinning = setUpPinning(flags['no-pin']);
const dir = mkdtempSync(join(os.tmpdir(), 'honest-proxy-ab-'));
try {
  const others = pinning.pinned ? pinning.otherCpus : undefined;
  const upstream = await startChild({ name: 'upstream', script: new URL('./upstream.ts', import.meta.url), args: [], logFile: join(dir, 'upstream.log'), cpus: others });
  // On the error path every proxy points at a port nobody listens on; the upstream runs all the same, so the layout is the one of the other scenarios.
  const target = `http://127.0.0.1:${scenario.deadUpstream ? await closedPort() : upstream.port}`;
  const cpus = pinning.pinned ? pinning.proxyCpus : undefined;
  const proxies = await startProxies(variants, target, dir, 'ab', [], cpus);
  const [reference] = variants as [Variant, ...Variant[]];
  // The same variant in a second process: what two identical processes differ by, the floor under every other ratio.
  const control = flags.control ? await startProxies([reference], target, dir, 'ab-control', [], cpus) : undefined;
  const entries = [
    ...variants.map((variant) => ({ label: variant as string, child: proxies.get(variant)! })),
    ...(control ? [{ label: `${reference}, a second process`, child: control.get(reference)! }] : []),
  ];
  process.stderr.write(`${describePinning(pinning)}\n`);
  const body = scenario.bodyBytes ? Buffer.alloc(scenario.bodyBytes, 'p') : undefined;
  const load = (child: Child, windowSeconds: number) =>
    runLoad({ port: child.port, host: HOST, method: scenario.method, path: scenario.path, body, connections, seconds: windowSeconds });
  for (const { child } of entries) await load(child, 2);

  const cpu = new Map<string, number[]>(entries.map((e) => [e.label, []]));
  let bad = 0;
  for (let round = 0; round < rounds; round++) {
    for (const { label, child } of round % 2 ? [...entries].reverse() : entries) {
      const before = await child.usage();
      const sample = await load(child, seconds);
      const after = await child.usage();
      // On the error path every answer is a 5xx; a 2xx there, or a broken connection anywhere, is a fault.
      bad += (scenario.deadUpstream ? sample.requests - sample.non2xx : sample.non2xx) + sample.errors + sample.timeouts;
      cpu.get(label)!.push((after.cpuMicros - before.cpuMicros) / sample.requests);
    }
    process.stderr.write(`round ${round + 1}/${rounds}: ${entries.map(({ label }) => `${label} ${cpu.get(label)!.at(-1)!.toFixed(0)}`).join(', ')} µs/req\n`);
  }
  await proxies.stop();
  await control?.stop();

  const lines = [`## Paired CPU per request, ${scenario.title}${connections === scenario.connections ? '' : `, at ${connections} connections`}: ${rounds} rounds of ${seconds} s windows, ${pinning.pinned ? 'pinned' : 'unpinned'}`, '', `| variant | median µs/req | ${reference} ÷ this, median of paired rounds | quartiles |`, '| --- | ---: | ---: | ---: |'];
  for (const { label } of entries) {
    const ratios = cpu.get(reference)!.map((ref, i) => ref / cpu.get(label)![i]!);
    lines.push(`| ${label} | ${median(cpu.get(label)!)!.toFixed(1)} | ${median(ratios)!.toFixed(3)}x | ${quartile(ratios, 0.25).toFixed(3)}-${quartile(ratios, 0.75).toFixed(3)}x |`);
  }
  lines.push('', `${scenario.deadUpstream ? '2xx' : 'non-2xx'}, errors and timeouts over all windows: ${bad}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  if (bad) process.exitCode = 1;
} finally {
  await stopAllChildren();
  rmSync(dir, { recursive: true, force: true });
}
