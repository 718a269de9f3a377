// Turns results into the markdown printed to stdout and pasted into
// docs/performance.md. Formatting only: every number is computed elsewhere.
import { LABELS, type LoadSummary, type RunResult, type ScenarioResult, type TransferSummary, type VariantResult, type Variant } from './results.ts';
import type { TargetCheck } from './targets.ts';

const NA = 'n/a';

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? NA : value.toFixed(digits);
}

function thousands(value: number | null): string {
  return value === null ? NA : Math.round(value).toLocaleString('en-US');
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

function table(header: string[], rows: string[][]): string {
  const align = header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [row(header), row(align), ...rows.map(row)].join('\n');
}

function codes(statusCodes: Record<string, number>): string {
  const entries = Object.entries(statusCodes);
  return entries.length ? entries.map(([code, count]) => `${code}: ${thousands(count)}`).join(', ') : '-';
}

function loadTable(result: ScenarioResult): string {
  const rows = result.variants.map((v) => {
    const s = v.summary as LoadSummary | null;
    if (!v.applicable || !s) return [LABELS[v.variant], NA, NA, NA, NA, NA, NA, NA, NA];
    return [LABELS[v.variant], thousands(s.rps), fixed(s.p50, 1), fixed(s.p99, 1), fixed(s.peakRssMiB, 1), thousands(s.non2xx), thousands(s.errors + s.timeouts), codes(s.statusCodes), String(s.failures.length)];
  });
  return table(['variant', 'req/s', 'p50 ms', 'p99 ms', 'peak RSS MiB', 'non-2xx', 'errors', 'status codes (all rounds)', 'failed rounds'], rows);
}

function transferTable(result: ScenarioResult): string {
  const rows = result.variants.map((v) => {
    const s = v.summary as TransferSummary | null;
    if (!v.applicable || !s) return [LABELS[v.variant], NA, NA, NA, NA, NA, NA];
    return [LABELS[v.variant], fixed(s.mibPerSecond, 1), fixed(s.seconds, 2), fixed(s.growthMiB, 1), fixed(s.maxGrowthMiB, 1), fixed(s.peakRssMiB, 1), String(s.failures.length)];
  });
  return table(['variant', 'MiB/s', 'wall s', 'RSS growth MiB', 'worst growth MiB', 'peak RSS MiB', 'failed rounds'], rows);
}

function summaryOf(result: ScenarioResult, variant: Variant): VariantResult['summary'] {
  const v = result.variants.find((entry) => entry.variant === variant);
  return v?.applicable ? v.summary : null;
}

function times(a: number | null | undefined, b: number | null | undefined): string {
  return a === null || a === undefined || b === null || b === undefined || b === 0 ? NA : `${(a / b).toFixed(2)}x`;
}

/** honest-proxy against bare hpm (its own overhead) and against direct (the physical limit). */
function ratioTable(result: ScenarioResult): string {
  const honest = summaryOf(result, 'honest-proxy');
  const against: Variant[] = ['hpm', 'direct'];
  if (result.scenario.kind === 'load') {
    const rows = against.map((base) => {
      const h = honest as LoadSummary | null;
      const b = summaryOf(result, base) as LoadSummary | null;
      return [`honest-proxy / ${base}`, times(h?.rps, b?.rps), times(h?.p50, b?.p50), times(h?.p99, b?.p99), times(h?.peakRssMiB, b?.peakRssMiB)];
    });
    return table(['ratio', 'req/s', 'p50', 'p99', 'peak RSS'], rows);
  }
  const rows = against.map((base) => {
    const h = honest as TransferSummary | null;
    const b = summaryOf(result, base) as TransferSummary | null;
    return [`honest-proxy / ${base}`, times(h?.mibPerSecond, b?.mibPerSecond), times(h?.seconds, b?.seconds), times(h?.growthMiB, b?.growthMiB)];
  });
  return table(['ratio', 'MiB/s', 'wall time', 'RSS growth'], rows);
}

export function scenarioSection(result: ScenarioResult, rounds: number): string {
  const body = result.scenario.kind === 'load' ? loadTable(result) : transferTable(result);
  return [`### ${result.scenario.title}`, '', `Medians over ${rounds} rounds.`, '', body, '', ratioTable(result), ''].join('\n');
}

/** One row per scenario: honest-proxy's throughput and tail against each other variant. */
function ratioSummary(run: RunResult): string {
  const others: Variant[] = ['direct', 'hpm', 'express-http-proxy', 'fastify-http-proxy'];
  const rows = run.scenarios.map((result) => {
    const honest = summaryOf(result, 'honest-proxy');
    const rate = (s: VariantResult['summary']) => (s ? (s.kind === 'load' ? s.rps : s.mibPerSecond) : null);
    const tail = (s: VariantResult['summary']) => (s ? (s.kind === 'load' ? s.p99 : s.growthMiB) : null);
    return [result.scenario.id, ...others.flatMap((o) => [times(rate(honest), rate(summaryOf(result, o))), times(tail(honest), tail(summaryOf(result, o)))])];
  });
  const header = ['scenario', ...others.flatMap((o) => [`vs ${LABELS[o]}: throughput`, 'p99 / RSS growth'])];
  return table(header, rows);
}

export function targetLines(checks: TargetCheck[]): string {
  return checks.map((c) => `- ${c.pass ? 'PASS' : 'MISS'} ${c.target}: ${c.detail}`).join('\n');
}

/**
 * One line for a failure: its first line plus, for a crashed child, the error
 * line from the log tail it carries (the whole tail stays in the JSON).
 */
function headline(failure: string): string {
  const [first = '', ...rest] = failure.split('\n');
  const cause = rest.find((line) => /^\s*[A-Za-z]*Error\b/.test(line));
  return cause ? `${first}: ${cause.trim()}` : first;
}

/**
 * Anything other than a clean 2xx under plain load is a bug to chase, not
 * noise to average away; on the error path only socket-level errors count.
 */
export function anomalies(run: RunResult): string[] {
  const found: string[] = [];
  for (const result of run.scenarios) {
    const expectErrors = result.scenario.kind === 'load' && result.scenario.deadUpstream;
    for (const v of result.variants) {
      const s = v.summary;
      if (!v.applicable || !s) continue;
      if (s.kind === 'load') {
        if (!expectErrors && s.non2xx) found.push(`${LABELS[v.variant]} on ${result.scenario.id}: ${s.non2xx} non-2xx responses (${codes(s.statusCodes)})`);
        if (s.errors || s.timeouts) found.push(`${LABELS[v.variant]} on ${result.scenario.id}: ${s.errors} socket errors, ${s.timeouts} timeouts`);
      }
      if (s.failures.length) {
        const reasons = [...new Set(s.failures.map(headline))];
        found.push(`${LABELS[v.variant]} on ${result.scenario.id}: ${s.failures.length} failed round(s): ${reasons.join('; ')}`);
      }
    }
  }
  return found;
}

export function fullReport(run: RunResult, checks: TargetCheck[]): string {
  const m = run.machine;
  const out = [
    `## honest-proxy benchmark (${run.settings.mode})`,
    '',
    `${m.cpus} x ${m.cpuModel}, ${m.memoryGiB.toFixed(1)} GiB RAM, Node ${m.node} on ${m.platform}; ${run.settings.rounds} rounds, ${run.settings.loadSeconds} s per load run; ${run.startedAt}; CPU ${(m.busyBeforeStart * 100).toFixed(0)}% busy just before the start.`,
    '',
    ...run.scenarios.map((s) => scenarioSection(s, run.settings.rounds)),
    '### honest-proxy relative to each variant',
    '',
    'Throughput is req/s (MiB/s for transfers), higher is better; the second number is p99 latency (RSS growth for transfers), lower is better.',
    '',
    ratioSummary(run),
    '',
    '### Targets',
    '',
    targetLines(checks),
    '',
  ];
  const found = anomalies(run);
  out.push('### Errors and non-2xx under load', '', found.length ? found.map((f) => `- ${f}`).join('\n') : '- none', '');
  if (run.childOutput.length) {
    out.push('### Child process output (stderr/stdout)', '', ...run.childOutput.map((c) => `- ${c.child}: ${c.lines} line(s), first: \`${c.firstLine.slice(0, 160)}\``), '');
  }
  if (run.warnings.length) out.push('### Warnings', '', ...run.warnings.map((w) => `- ${w}`), '');
  return out.join('\n');
}
