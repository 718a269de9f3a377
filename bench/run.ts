// The bench orchestrator: `npm run bench` (full) or `npm run bench:quick`.
// Starts the upstream, runs every scenario against every variant, prints the
// report to stdout (progress goes to stderr) and writes bench/results/.
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { removeChildLogs, summarizeChildLogs } from './child-logs.ts';
import { closedPort } from './closed-port.ts';
import { startChild, stopAllChildren } from './ipc/parent.ts';
import { measureLoad, measureTransfer, type Context } from './measure.ts';
import { writeResult } from './results-file.ts';
import { checkAffinity, describePinning, setUpPinning } from './pinning.ts';
import { anomalies, fullReport } from './report.ts';
import { ON_REQUEST, VARIANTS, type RunResult, type Variant } from './results.ts';
import { SCENARIOS, SETTINGS } from './scenarios.ts';
import { evaluateTargets } from './targets.ts';

/** Share of all cores busy, before the bench starts anything, above which the numbers are suspect. */
const BUSY_SHARE = 0.25;
/** Set while a run is on, for the signal handlers: main's finally does not run after process.exit. */
let onInterrupt: (() => void) | undefined;

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    // For working on the bench itself; a filtered run writes no result files.
    only: { type: 'string' },
    variants: { type: 'string' },
    'keep-logs': { type: 'boolean', default: false },
    // Pinning is on by default wherever it is possible (pinning.ts).
    'no-pin': { type: 'boolean', default: false },
  },
});

function pick<T extends string>(list: string | undefined, all: readonly T[], what: string): T[] {
  if (!list) return [...all];
  const wanted = list.split(',').map((s) => s.trim());
  const unknown = wanted.filter((w) => !all.includes(w as T));
  if (unknown.length) throw new Error(`unknown ${what}: ${unknown.join(', ')}; known: ${all.join(', ')}`);
  return all.filter((item) => wanted.includes(item));
}

/**
 * How busy the machine is right now, over one second. The load average would
 * do, but it still remembers a bench that ended a minute ago.
 */
async function cpuBusyShare(): Promise<number> {
  const total = () => os.cpus().reduce((t, c) => ({ idle: t.idle + c.times.idle, all: t.all + Object.values(c.times).reduce((a, b) => a + b, 0) }), { idle: 0, all: 0 });
  const before = total();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const after = total();
  const all = after.all - before.all;
  return all > 0 ? 1 - (after.idle - before.idle) / all : 0;
}

async function main(): Promise<void> {
  const settings = SETTINGS[flags.quick ? 'quick' : 'full'];
  const scenarios = SCENARIOS.filter((s) => pick(flags.only, SCENARIOS.map((x) => x.id), 'scenario').includes(s.id));
  // The route-table variants answer one question (does a big or cached table cost more?): named, not run by default.
  const variants: Variant[] = flags.variants ? pick(flags.variants, VARIANTS, 'variant') : VARIANTS.filter((v) => !ON_REQUEST.includes(v));
  const filtered = Boolean(flags.only || flags.variants);
  const runDir = mkdtempSync(join(os.tmpdir(), 'honest-proxy-bench-'));
  const logDir = join(runDir, 'logs');
  mkdirSync(logDir);
  // Children inherit this: every variant is spawned once per scenario (and per
  // transfer round), and a warm compile cache halves each start.
  process.env.NODE_COMPILE_CACHE = join(runDir, 'compile-cache');
  const t0 = Date.now();
  const progress = (line: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${line}\n`);
  const run: RunResult = {
    settings,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    machine: {
      cpus: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: os.totalmem() / 1024 ** 3,
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      busyBeforeStart: 0,
      loadAverage: { start: os.loadavg()[0]!, end: 0 },
    },
    pinning: { pinned: false, reason: 'not set up yet', observed: {} },
    pools: {},
    warnings: [],
    childOutput: [],
    scenarios: [],
  };
  const warn = (line: string) => {
    if (run.warnings.includes(line)) return;
    run.warnings.push(line);
    progress(`WARNING: ${line}`);
  };

  // The bench assumes the machine to itself; say so when it was not.
  run.machine.busyBeforeStart = await cpuBusyShare();
  if (run.machine.busyBeforeStart > BUSY_SHARE) {
    warn(`the machine was ${(run.machine.busyBeforeStart * 100).toFixed(0)}% busy just before the run: expect noisy numbers`);
  }
  // After the busy check (which should see the whole machine), before any child starts.
  const pinning = setUpPinning(flags['no-pin']);
  run.pinning = pinning;
  const otherCpus = pinning.pinned ? pinning.otherCpus : undefined;
  const benchWrong = checkAffinity(pinning, 'bench', process.pid, otherCpus);
  if (benchWrong) warn(benchWrong);
  progress(`bench (${settings.mode}): ${scenarios.length} scenarios x ${variants.length} variants x ${settings.rounds} rounds, Node ${process.version}; child logs in ${logDir}`);
  let failed = false;
  onInterrupt = () => progress(`interrupted; child logs kept in ${logDir}`);
  try {
    const upstream = await startChild({ name: 'upstream', script: new URL('./upstream.ts', import.meta.url), args: [], logFile: join(logDir, 'upstream.log'), cpus: otherCpus });
    const upstreamWrong = checkAffinity(pinning, 'upstream', upstream.pid, otherCpus);
    if (upstreamWrong) warn(upstreamWrong);
    progress(describePinning(pinning));
    const ctx: Context = {
      settings,
      upstream,
      upstreamPort: upstream.port,
      deadPort: await closedPort(),
      logDir,
      variants,
      pinning,
      notePool: (variant, pool) => {
        run.pools[variant] ??= pool;
      },
      progress,
      warn,
    };
    for (const scenario of scenarios) {
      run.scenarios.push(scenario.kind === 'load' ? await measureLoad(scenario, ctx) : await measureTransfer(scenario, ctx));
    }
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await stopAllChildren();
    run.finishedAt = new Date().toISOString();
    run.machine.loadAverage.end = os.loadavg()[0]!;
    run.childOutput = summarizeChildLogs(logDir);
    if (failed || flags['keep-logs']) progress(`child logs kept in ${logDir}`);
    else removeChildLogs(runDir);
  }

  const checks = evaluateTargets(run.scenarios, run.pinning);
  const report = fullReport(run, checks);
  process.stdout.write(`${report}\n`);
  if (!filtered) {
    const base = settings.mode === 'quick' ? 'quick' : 'latest';
    writeResult(`${base}.json`, `${JSON.stringify({ ...run, targets: checks, anomalies: anomalies(run) }, null, 2)}\n`);
    const md = writeResult(`${base}.md`, report);
    progress(`results written to ${md.replace(/\.md$/, '.{json,md}')}`);
  }
}

// Children also exit when the IPC channel closes, but stop them actively so
// Ctrl-C leaves nothing running even for a moment.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    onInterrupt?.();
    void stopAllChildren().finally(() => process.exit(130));
  });
}

const started = Date.now();
try {
  await main();
  process.stderr.write(`bench finished in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
} catch (err) {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
}
