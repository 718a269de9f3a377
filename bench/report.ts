// Turns results into the markdown printed to stdout and pasted into
// docs/performance.md. Formatting only: every number is computed elsewhere.
import { describePinning } from './pinning.ts';
import { HONEST, LABELS, type LoadSummary, type RunResult, type ScenarioResult, type TransferSummary, type VariantResult, type Variant } from './results.ts';
import { cpuRatio, honestProblems, spread, type TargetCheck } from './targets.ts';

const NA = 'n/a';
/** The scenarios the CPU headline is about. */
const HEADLINE_SCENARIOS: Record<string, string> = { 'small-get': 'small GET', 'post-64k': 'POST 64 KiB' };

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

function summaryOf(result: ScenarioResult, variant: Variant): VariantResult['summary'] {
  const v = result.variants.find((entry) => entry.variant === variant);
  return v?.applicable ? v.summary : null;
}

function times(a: number | null | undefined, b: number | null | undefined): string {
  return a === null || a === undefined || b === null || b === undefined || b === 0 ? NA : `${(a / b).toFixed(2)}x`;
}

function loadTable(result: ScenarioResult): string {
  const rows = result.variants.map((v) => {
    const s = v.summary as LoadSummary | null;
    if (!v.applicable || !s) return [LABELS[v.variant], NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA];
    return [
      LABELS[v.variant],
      thousands(s.rps),
      fixed(s.p50, 1),
      fixed(s.p99, 1),
      fixed(s.cpuMicrosPerRequest, 1),
      fixed(s.gcMicrosPerRequest, 1),
      fixed(s.peakRssMiB, 1),
      fixed(s.upstreamConnections, 0),
      thousands(s.non2xx),
      thousands(s.errors + s.timeouts),
      codes(s.statusCodes),
      String(s.failures.length),
    ];
  });
  return table(['variant', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'GC pause µs/req', 'peak RSS MiB', 'upstream conns opened', 'non-2xx', 'errors', 'status codes (all rounds)', 'failed rounds'], rows);
}

function transferTable(result: ScenarioResult): string {
  const direct = summaryOf(result, 'direct') as TransferSummary | null;
  const rows = result.variants.map((v) => {
    const s = v.summary as TransferSummary | null;
    if (!v.applicable || !s) return [LABELS[v.variant], NA, NA, NA, NA, NA, NA, NA, NA, NA];
    return [
      LABELS[v.variant],
      fixed(s.mibPerSecond, 1),
      times(s.mibPerSecond, direct?.mibPerSecond),
      fixed(s.seconds, 2),
      fixed(s.cpuMsPerTransfer, 0),
      fixed(s.cpuMsPerMiB, 2),
      fixed(s.growthMiB, 1),
      fixed(s.maxGrowthMiB, 1),
      fixed(s.peakRssMiB, 1),
      String(s.failures.length),
    ];
  });
  return table(['variant', 'MiB/s', 'vs direct', 'wall s', 'CPU ms / transfer', 'CPU ms / MiB', 'RSS growth MiB', 'worst growth MiB', 'peak RSS MiB', 'failed rounds'], rows);
}

/** honest-proxy (both) against bare hpm (their own overhead), against direct (the physical limit) and against a bare TCP pipe (the limit of any second hop). */
function ratioTable(result: ScenarioResult): string {
  const pairs: [Variant, Variant][] = [
    ['honest-proxy', 'hpm'],
    ['honest-proxy-bare', 'hpm'],
    ['honest-proxy', 'direct'],
    ['honest-proxy', 'tcp-pipe'],
  ];
  const present = pairs.filter(([a]) => summaryOf(result, a));
  if (result.scenario.kind === 'load') {
    const rows = present.map(([a, base]) => {
      const h = summaryOf(result, a) as LoadSummary | null;
      const b = summaryOf(result, base) as LoadSummary | null;
      return [`${a} / ${base}`, times(h?.cpuMicrosPerRequest, b?.cpuMicrosPerRequest), times(h?.rps, b?.rps), times(h?.p50, b?.p50), times(h?.p99, b?.p99), times(h?.peakRssMiB, b?.peakRssMiB)];
    });
    return table(['ratio', 'CPU/req', 'req/s', 'p50', 'p99', 'peak RSS'], rows);
  }
  const rows = present.map(([a, base]) => {
    const h = summaryOf(result, a) as TransferSummary | null;
    const b = summaryOf(result, base) as TransferSummary | null;
    return [`${a} / ${base}`, times(h?.cpuMsPerTransfer, b?.cpuMsPerTransfer), times(h?.mibPerSecond, b?.mibPerSecond), times(h?.seconds, b?.seconds), times(h?.growthMiB, b?.growthMiB)];
  });
  return table(['ratio', 'CPU/transfer', 'MiB/s', 'wall time', 'RSS growth'], rows);
}

export function scenarioSection(result: ScenarioResult, rounds: number): string {
  const body = result.scenario.kind === 'load' ? loadTable(result) : transferTable(result);
  return [`### ${result.scenario.title}`, '', `Medians over ${rounds} rounds.`, '', body, '', ratioTable(result), ''].join('\n');
}

/**
 * The headline: each variant's CPU per request (the proxy process's own
 * user + system time over the load window, per completed request), how hpm's
 * compares with it, and the throughput and p99 measured alongside.
 */
function cpuHeadline(run: RunResult): string {
  const results = run.scenarios.filter((s) => s.scenario.id in HEADLINE_SCENARIOS);
  if (!results.length) return '';
  const variants = results[0]!.variants.map((v) => v.variant);
  const header = ['variant', ...results.flatMap((r) => {
    const name = HEADLINE_SCENARIOS[r.scenario.id]!;
    return [`${name}: CPU µs/req`, 'hpm ÷ this', 'req/s', 'p99 ms'];
  })];
  const rows = variants.map((variant) => [
    LABELS[variant],
    ...results.flatMap((r) => {
      const s = summaryOf(r, variant) as LoadSummary | null;
      const hpm = summaryOf(r, 'hpm') as LoadSummary | null;
      return [fixed(s?.cpuMicrosPerRequest, 1), times(hpm?.cpuMicrosPerRequest, s?.cpuMicrosPerRequest), thousands(s?.rps ?? null), fixed(s?.p99, 1)];
    }),
  ]);
  const ratioLine = (variant: Variant) => {
    const parts = results.map((r) => {
      const { ratio, rounds } = cpuRatio(r, variant);
      return `${HEADLINE_SCENARIOS[r.scenario.id]} ${ratio === null ? NA : `${ratio.toFixed(2)}x`}${spread(rounds) ? ` (rounds ${spread(rounds)})` : ''}`;
    });
    return `hpm/honest CPU per request, ${variant === 'honest-proxy' ? 'guards on' : 'guards off'}: ${parts.join('; ')}`;
  };
  const lines = HONEST.filter((v) => variants.includes(v) && variants.includes('hpm')).map((v, i) => (i === 0 ? `- **${ratioLine(v)}**` : `- ${ratioLine(v)}`));
  return [
    '### CPU per request (µs, median of rounds) and the ratio hpm/honest',
    '',
    'The proxy process\'s own CPU time (user + system, every thread, from `process.cpuUsage()` taken in the child just before and just after each load window) divided by the requests completed in the window. "hpm ÷ this" above 1 means cheaper than bare hpm. `direct` has no proxy process.',
    '',
    table(header, rows),
    '',
    ...lines,
    '',
  ].join('\n');
}

/** honest-proxy's non-2xx, errors and failed rounds, loudly when there are any. */
function honestErrorLines(run: RunResult): string {
  const present = HONEST.filter((v) => run.scenarios.some((s) => summaryOf(s, v)));
  const found = present.flatMap((v) => honestProblems(run.scenarios, v).map((p) => `${LABELS[v]}: ${p}`));
  if (!present.length) return '';
  if (!found.length) return `- ${present.map((v) => LABELS[v]).join(' and ')}: 0 non-2xx, 0 socket errors, 0 timeouts, 0 failed rounds in every scenario (only 502s on the error path).\n`;
  return ['- **HONEST-PROXY ANSWERED NON-2XX OR FAILED UNDER LOAD: THESE MUST BE 0.**', ...found.map((f) => `  - **${f}**`), ''].join('\n');
}

/** One row per other variant: honest-proxy's throughput and tail against it, per scenario. */
function ratioSummary(run: RunResult): string {
  const others = (run.scenarios[0]?.variants ?? []).map((v) => v.variant).filter((v) => v !== 'honest-proxy');
  const rate = (s: VariantResult['summary']) => (s ? (s.kind === 'load' ? s.rps : s.mibPerSecond) : null);
  const tail = (s: VariantResult['summary']) => (s ? (s.kind === 'load' ? s.p99 : s.growthMiB) : null);
  const rows = others.map((other) => [
    `vs ${LABELS[other]}`,
    ...run.scenarios.map((result) => {
      const honest = summaryOf(result, 'honest-proxy');
      const theirs = summaryOf(result, other);
      return `${times(rate(honest), rate(theirs))} / ${times(tail(honest), tail(theirs))}`;
    }),
  ]);
  return table(['honest-proxy (guards on)', ...run.scenarios.map((s) => s.scenario.id)], rows);
}

/** Each variant's upstream pool, and whether it can keep a warm socket for every client connection. */
function poolLines(run: RunResult): string {
  const connections = Math.max(0, ...run.scenarios.map((s) => (s.scenario.kind === 'load' ? s.scenario.connections : 0)));
  const lines = (Object.entries(run.pools) as [Variant, NonNullable<RunResult['pools'][Variant]>][]).map(([variant, pool]) => {
    const limits = [pool.keepAlive ? 'keep-alive' : 'no keep-alive', `maxSockets ${pool.maxSockets ?? 'unlimited'}`, `maxFreeSockets ${pool.maxFreeSockets ?? 'no cap'}`].join(', ');
    const churn =
      pool.keepAlive && pool.maxFreeSockets !== null && pool.maxFreeSockets < connections
        ? `; **fewer free sockets (${pool.maxFreeSockets}) than the ${connections} client connections**: when more than ${pool.maxFreeSockets} upstream sockets are idle at once, the rest are closed and later reopened (churn)`
        : '';
    const opened = run.scenarios
      .filter((s) => s.scenario.kind === 'load' && !s.scenario.deadUpstream)
      .map((s) => `${s.scenario.id} ${fixed((summaryOf(s, variant) as LoadSummary | null)?.upstreamConnections, 0)}`)
      .join(', ');
    return `- ${LABELS[variant]}: ${pool.client}, ${limits}${pool.note ? `; ${pool.note}` : ''}${churn}. Upstream connections opened per measured window (median): ${opened || NA}.`;
  });
  return lines.length ? ['### Upstream connection pools', '', 'Observed on each proxy child\'s first upstream request (declared by the variant for undici). A warm keep-alive pool opens few or no connections in a measured window; one that churns opens many.', '', ...lines, ''].join('\n') : '';
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
  const cpuChecks = checks.filter((c) => c.target.includes('CPU per request'));
  const out = [
    `## honest-proxy benchmark (${run.settings.mode})`,
    '',
    `${m.cpus} x ${m.cpuModel}, ${m.memoryGiB.toFixed(1)} GiB RAM, Node ${m.node} on ${m.platform}; ${run.settings.rounds} rounds, ${run.settings.loadSeconds} s per load run, variants in a new order each round (Williams design); ${run.startedAt}; CPU ${(m.busyBeforeStart * 100).toFixed(0)}% busy just before the start.`,
    '',
    describePinning(run.pinning),
    '',
    cpuHeadline(run),
    targetLines(cpuChecks),
    honestErrorLines(run),
    ...run.scenarios.map((s) => scenarioSection(s, run.settings.rounds)),
    '### honest-proxy relative to each variant',
    '',
    'Each cell: throughput ratio (req/s, MiB/s for transfers; higher is better) / p99 ratio (RSS growth for transfers; lower is better).',
    '',
    ratioSummary(run),
    '',
    poolLines(run),
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
