// The performance targets, each judged from the medians (memory from
// the worst round) and reported as PASS or MISS, never skipped. A variant
// with failed rounds cannot pass a target.
import type { Pinning } from './pinning.ts';
import { HONEST, LABELS, perRoundRatios, type LoadSummary, type ScenarioResult, type TransferSummary, type Variant } from './results.ts';

export interface TargetCheck {
  target: string;
  pass: boolean;
  detail: string;
}

const RSS_GROWTH_LIMIT_MiB = 64;
/** hpm's CPU per request over honest-proxy's (guards on), small GET: at least even, and the stretch. */
const CPU_RATIO_TARGET = 1.0;
const CPU_RATIO_STRETCH = 1.13;

function variantOf(result: ScenarioResult, variant: Variant) {
  return result.variants.find((entry) => entry.variant === variant);
}

function summaryOf(result: ScenarioResult, variant: Variant): LoadSummary | TransferSummary | null {
  const v = variantOf(result, variant);
  return v?.applicable ? v.summary : null;
}

/** req/s, or MiB/s for transfers; null if there is none (n/a, or every round failed). */
function throughput(summary: LoadSummary | TransferSummary | null): number | null {
  if (!summary) return null;
  return summary.kind === 'load' ? summary.rps : summary.mibPerSecond;
}

function failureNote(summary: LoadSummary | TransferSummary | null): string {
  return summary?.failures.length ? ` (${summary.failures.length} failed round(s): ${summary.failures[0]!.split('\n')[0]})` : '';
}

/** `ours >= factor x theirs` (or <= for latency), with the numbers shown. */
function compare(target: string, ours: number | null, theirs: number | null, factor: number, unit: string, lowerIsBetter: boolean, note: string): TargetCheck {
  if (ours === null || theirs === null) return { target, pass: false, detail: `no number to compare${note}` };
  const pass = (lowerIsBetter ? ours <= factor * theirs : ours >= factor * theirs) && !note;
  return { target, pass, detail: `${ours.toFixed(1)} vs ${theirs.toFixed(1)} ${unit} = ${(ours / theirs).toFixed(3)}x${note}` };
}

/** "0.97-1.04x" over the rounds, or '' when fewer than two rounds pair up. */
export function spread(ratios: number[]): string {
  if (ratios.length < 2) return '';
  return `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}x`;
}

/** hpm's CPU per request over `variant`'s: above 1, `variant` is the cheaper. */
export function cpuRatio(result: ScenarioResult, variant: Variant): { ratio: number | null; rounds: number[] } {
  const hpm = summaryOf(result, 'hpm') as LoadSummary | null;
  const other = summaryOf(result, variant) as LoadSummary | null;
  const a = hpm?.cpuMicrosPerRequest ?? null;
  const b = other?.cpuMicrosPerRequest ?? null;
  return {
    ratio: a === null || b === null || b === 0 ? null : a / b,
    rounds: perRoundRatios(variantOf(result, 'hpm'), variantOf(result, variant), (r) => r.cpuMicrosPerRequest),
  };
}

function cpuChecks(smallGet: ScenarioResult, pinning: Pinning | undefined): TargetCheck[] {
  const honest = summaryOf(smallGet, 'honest-proxy') as LoadSummary | null;
  const hpm = summaryOf(smallGet, 'hpm') as LoadSummary | null;
  const { ratio, rounds } = cpuRatio(smallGet, 'honest-proxy');
  const note = failureNote(honest) || failureNote(hpm);
  const where = pinning && !pinning.pinned ? `; UNPINNED (${pinning.reason}): not the method the targets are set for` : '';
  const perRound = spread(rounds) ? `; per round ${spread(rounds)}` : '';
  return [
    { factor: CPU_RATIO_TARGET, stretch: false },
    { factor: CPU_RATIO_STRETCH, stretch: true },
  ].map(({ factor, stretch }) => {
    const target = `small GET: hpm/honest CPU per request >= ${factor.toFixed(2)} (guards on${stretch ? ', stretch' : ''})`;
    if (ratio === null) return { target, pass: false, detail: `no number to compare${note}` };
    return {
      target,
      pass: ratio >= factor && !note,
      detail: `hpm ${hpm!.cpuMicrosPerRequest!.toFixed(1)} vs honest-proxy ${honest!.cpuMicrosPerRequest!.toFixed(1)} µs/req = ${ratio.toFixed(3)}x${perRound}${note}${where}`,
    };
  });
}

/**
 * Everything honest-proxy answered that it should not have: non-2xx or
 * socket errors outside the error path, anything but its 502 on it, and
 * failed rounds anywhere. Empty is the only acceptable answer.
 */
export function honestProblems(scenarios: ScenarioResult[], variant: Variant): string[] {
  const problems: string[] = [];
  for (const result of scenarios) {
    const s = summaryOf(result, variant);
    if (!s) continue;
    const id = result.scenario.id;
    if (s.failures.length) problems.push(`${id}: ${s.failures.length} failed round(s)`);
    if (s.kind !== 'load') continue;
    if (s.errors || s.timeouts) problems.push(`${id}: ${s.errors} socket errors, ${s.timeouts} timeouts`);
    const dead = result.scenario.kind === 'load' && result.scenario.deadUpstream;
    if (!dead && s.non2xx) problems.push(`${id}: ${s.non2xx} non-2xx (${Object.entries(s.statusCodes).map(([c, n]) => `${c}: ${n}`).join(', ')})`);
    const stray = Object.keys(s.statusCodes).filter((code) => code !== '502');
    if (dead && stray.length) problems.push(`${id}: answered ${stray.join(', ')} besides its 502`);
  }
  return problems;
}

export function evaluateTargets(scenarios: ScenarioResult[], pinning?: Pinning): TargetCheck[] {
  const checks: TargetCheck[] = [];

  const smallGet = scenarios.find((s) => s.scenario.id === 'small-get');
  if (smallGet) {
    checks.push(...cpuChecks(smallGet, pinning));
    const honest = summaryOf(smallGet, 'honest-proxy') as LoadSummary | null;
    const hpm = summaryOf(smallGet, 'hpm') as LoadSummary | null;
    const note = failureNote(honest);
    checks.push(compare('small GET: honest-proxy req/s >= 0.95 x bare hpm', honest?.rps ?? null, hpm?.rps ?? null, 0.95, 'req/s', false, note));
    checks.push(compare('small GET: honest-proxy p99 <= 1.1 x bare hpm', honest?.p99 ?? null, hpm?.p99 ?? null, 1.1, 'ms', true, note));
  }

  for (const variant of HONEST) {
    if (!scenarios.some((s) => summaryOf(s, variant))) continue;
    const problems = honestProblems(scenarios, variant);
    checks.push({
      target: `${LABELS[variant]}: 0 non-2xx, 0 errors, 0 failed rounds (only 502s on the error path)`,
      pass: problems.length === 0,
      detail: problems.length ? problems.join('; ') : `clean in ${scenarios.filter((s) => summaryOf(s, variant)).length} scenario(s)`,
    });
  }

  for (const result of scenarios) {
    const honest = summaryOf(result, 'honest-proxy');
    const other = summaryOf(result, 'express-http-proxy');
    if (!honest || !other) continue;
    const unit = result.scenario.kind === 'load' ? 'req/s' : 'MiB/s';
    const target = `${result.scenario.id}: honest-proxy throughput >= express-http-proxy`;
    // express-http-proxy failing every round is a win for honest-proxy, said as such.
    if (throughput(other) === null && throughput(honest) !== null && !honest.failures.length) {
      checks.push({ target, pass: true, detail: `express-http-proxy failed every round${failureNote(other)}` });
    } else {
      checks.push(compare(target, throughput(honest), throughput(other), 1, unit, false, failureNote(honest)));
    }
  }

  for (const result of scenarios) {
    if (result.scenario.kind !== 'transfer') continue;
    const honest = summaryOf(result, 'honest-proxy') as TransferSummary | null;
    const direct = summaryOf(result, 'direct') as TransferSummary | null;
    if (!honest) continue;
    const note = failureNote(honest);
    const growth = honest.maxGrowthMiB;
    checks.push({
      target: `${result.scenario.id}: honest-proxy RSS growth < ${RSS_GROWTH_LIMIT_MiB} MiB (worst round)`,
      pass: growth !== null && growth < RSS_GROWTH_LIMIT_MiB && !note,
      detail: `${growth === null ? '?' : growth.toFixed(1)} MiB${note}`,
    });
    const vsDirect = compare(`${result.scenario.id}: honest-proxy throughput >= 0.8 x direct`, honest.mibPerSecond, direct?.mibPerSecond ?? null, 0.8, 'MiB/s', false, note);
    // What the second hop alone allows on this machine, for reading a miss.
    const pipe = summaryOf(result, 'tcp-pipe') as TransferSummary | null;
    if (pipe?.mibPerSecond != null && direct?.mibPerSecond) vsDirect.detail += `; a bare TCP pipe reaches ${(pipe.mibPerSecond / direct.mibPerSecond).toFixed(3)}x direct`;
    checks.push(vsDirect);
  }
  return checks;
}
