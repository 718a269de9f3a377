// The performance targets, each judged from the medians (memory from
// the worst round) and reported as PASS or MISS, never skipped. A variant
// with failed rounds cannot pass a target.
import type { LoadSummary, ScenarioResult, TransferSummary, Variant } from './results.ts';

export interface TargetCheck {
  target: string;
  pass: boolean;
  detail: string;
}

const RSS_GROWTH_LIMIT_MiB = 64;

function summaryOf(result: ScenarioResult, variant: Variant): LoadSummary | TransferSummary | null {
  const v = result.variants.find((entry) => entry.variant === variant);
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

export function evaluateTargets(scenarios: ScenarioResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];

  const smallGet = scenarios.find((s) => s.scenario.id === 'small-get');
  if (smallGet) {
    const honest = summaryOf(smallGet, 'honest-proxy') as LoadSummary | null;
    const hpm = summaryOf(smallGet, 'hpm') as LoadSummary | null;
    const note = failureNote(honest);
    checks.push(compare('small GET: honest-proxy req/s >= 0.95 x bare hpm', honest?.rps ?? null, hpm?.rps ?? null, 0.95, 'req/s', false, note));
    checks.push(compare('small GET: honest-proxy p99 <= 1.1 x bare hpm', honest?.p99 ?? null, hpm?.p99 ?? null, 1.1, 'ms', true, note));
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
    checks.push(compare(`${result.scenario.id}: honest-proxy throughput >= 0.8 x direct`, honest.mibPerSecond, direct?.mibPerSecond ?? null, 0.8, 'MiB/s', false, note));
  }
  return checks;
}
