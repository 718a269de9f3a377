// The shape of a run's results (also the JSON written to bench/results/) and
// the reduction of rounds to medians.
import type { PoolInfo } from './ipc/messages.ts';
import type { LoadSample } from './load/autocannon.ts';
import type { Pinning } from './pinning.ts';
import type { Scenario, Settings } from './scenarios.ts';

/** From the physical limit, through the engine and the frameworks, to honest-proxy and the alternatives. */
export const VARIANTS = ['direct', 'tcp-pipe', 'httpxy-raw', 'httpxy-express', 'hpm', 'honest-proxy', 'honest-proxy-bare', 'honest-proxy-10k-hosts', 'honest-proxy-cached', 'express-http-proxy', 'fastify-http-proxy'] as const;
export type Variant = (typeof VARIANTS)[number];

/** Variants a full run leaves out unless named with --variants. */
export const ON_REQUEST: readonly Variant[] = ['honest-proxy-10k-hosts', 'honest-proxy-cached'];

/** How variants are named in tables. */
export const LABELS: Record<Variant, string> = {
  direct: 'direct',
  'tcp-pipe': 'TCP pipe (node:net, no HTTP)',
  'httpxy-raw': 'httpxy (raw node:http)',
  'httpxy-express': 'httpxy in Express',
  hpm: 'hpm (bare)',
  'honest-proxy': 'honest-proxy (guards on)',
  'honest-proxy-bare': 'honest-proxy (guards off)',
  'honest-proxy-10k-hosts': 'honest-proxy, 10,000-host record table',
  'honest-proxy-cached': 'honest-proxy, cachedRoutes (warm)',
  'express-http-proxy': 'express-http-proxy',
  'fastify-http-proxy': '@fastify/http-proxy',
};

/**
 * Variants that cannot answer a request themselves: on the error path (no
 * upstream) `direct` would measure refused connects and the TCP pipe closed
 * sockets, so both are n/a there.
 */
export const NOT_ON_ERROR_PATH: readonly Variant[] = ['direct', 'tcp-pipe'];

/** The honest-proxy variants: every target about errors holds for both. */
export const HONEST: readonly Variant[] = ['honest-proxy', 'honest-proxy-bare', 'honest-proxy-10k-hosts', 'honest-proxy-cached'];

/**
 * What one measured window cost, from the children's own process.cpuUsage()
 * just before and just after it. Null where there is no proxy process (direct).
 */
export interface WindowCost {
  /** The proxy child's user + system CPU over the window, µs. */
  cpuMicros: number | null;
  /** The part of the window the proxy's main thread spent paused in GC, µs. */
  gcMicros: number | null;
  /** The upstream's, for reference: it should not depend on the proxy. */
  upstreamCpuMicros: number;
  /** TCP connections the upstream accepted during the window: the proxy's new upstream connections (the client's, for direct). */
  upstreamConnections: number;
}

/** A failed round (the proxy crashed, a transfer broke) is kept with its reason, never dropped. */
export type Failed = { ok: false; error: string };

export type LoadRound =
  | (LoadSample &
      WindowCost & {
        ok: true;
        /** Null for `direct`: there is no proxy process. */
        peakRssMiB: number | null;
        /** cpuMicros / requests completed in the window (autocannon's count). */
        cpuMicrosPerRequest: number | null;
        /** gcMicros / requests completed in the window. */
        gcMicrosPerRequest: number | null;
      })
  | Failed;

export type TransferRound =
  | (WindowCost & {
      ok: true;
      seconds: number;
      mibPerSecond: number;
      baselineMiB: number | null;
      peakRssMiB: number | null;
      growthMiB: number | null;
      /** Proxy CPU per transfer, ms, and per MiB moved, ms. */
      cpuMsPerTransfer: number | null;
      cpuMsPerMiB: number | null;
    })
  | Failed;

/** Medians over the rounds that completed; null when none did. */
export interface LoadSummary {
  kind: 'load';
  rps: number | null;
  p50: number | null;
  p99: number | null;
  peakRssMiB: number | null;
  /** The proxy's CPU per request, µs: median of the rounds' values. */
  cpuMicrosPerRequest: number | null;
  /** Its GC pauses per request, µs: median of the rounds' values. */
  gcMicrosPerRequest: number | null;
  /** Median over rounds of the upstream connections the proxy opened in a window. */
  upstreamConnections: number | null;
  failures: string[];
  /** Sums over all rounds. */
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
}

export interface TransferSummary {
  kind: 'transfer';
  mibPerSecond: number | null;
  seconds: number | null;
  growthMiB: number | null;
  /** Worst round: the memory target is judged on this, not the median. */
  maxGrowthMiB: number | null;
  peakRssMiB: number | null;
  cpuMsPerTransfer: number | null;
  cpuMsPerMiB: number | null;
  failures: string[];
}

export interface VariantResult {
  variant: Variant;
  /** False where the variant has no meaning (direct on the error path). */
  applicable: boolean;
  rounds: (LoadRound | TransferRound)[];
  summary: LoadSummary | TransferSummary | null;
}

export interface ScenarioResult {
  scenario: Scenario;
  variants: VariantResult[];
}

export interface RunResult {
  settings: Settings;
  startedAt: string;
  finishedAt: string;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    node: string;
    platform: string;
    /** Share of all cores busy during one second before the bench started anything. */
    busyBeforeStart: number;
    loadAverage: { start: number; end: number };
  };
  /** Where the proxies, the upstream and the load generator ran (pinning.ts). */
  pinning: Pinning;
  /** Each proxy variant's upstream pool, as observed (or declared, for undici). */
  pools: Partial<Record<Variant, PoolInfo>>;
  warnings: string[];
  /** Non-empty child stderr/stdout, per child: a proxy that complains under plain load is a finding. */
  childOutput: { child: string; lines: number; firstLine: string }[];
  scenarios: ScenarioResult[];
}

export function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function nonNull(values: (number | null)[]): number[] {
  return values.filter((v): v is number => v !== null);
}

function failuresOf(rounds: (LoadRound | TransferRound)[]): string[] {
  return rounds.flatMap((r) => (r.ok ? [] : [r.error]));
}

export function summarizeLoad(rounds: LoadRound[]): LoadSummary {
  const ok = rounds.filter((r) => r.ok);
  const statusCodes: Record<string, number> = {};
  for (const round of ok) {
    for (const [code, count] of Object.entries(round.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + count;
  }
  const sum = (pick: (r: (typeof ok)[number]) => number) => ok.reduce((total, r) => total + pick(r), 0);
  return {
    kind: 'load',
    rps: median(ok.map((r) => r.rps)),
    p50: median(ok.map((r) => r.p50)),
    p99: median(ok.map((r) => r.p99)),
    peakRssMiB: median(nonNull(ok.map((r) => r.peakRssMiB))),
    cpuMicrosPerRequest: median(nonNull(ok.map((r) => r.cpuMicrosPerRequest))),
    gcMicrosPerRequest: median(nonNull(ok.map((r) => r.gcMicrosPerRequest))),
    upstreamConnections: median(ok.map((r) => r.upstreamConnections)),
    failures: failuresOf(rounds),
    requests: sum((r) => r.requests),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    statusCodes,
  };
}

export function summarizeTransfer(rounds: TransferRound[]): TransferSummary {
  const ok = rounds.filter((r) => r.ok);
  const growth = nonNull(ok.map((r) => r.growthMiB));
  return {
    kind: 'transfer',
    mibPerSecond: median(ok.map((r) => r.mibPerSecond)),
    seconds: median(ok.map((r) => r.seconds)),
    growthMiB: median(growth),
    maxGrowthMiB: growth.length ? Math.max(...growth) : null,
    peakRssMiB: median(nonNull(ok.map((r) => r.peakRssMiB))),
    cpuMsPerTransfer: median(nonNull(ok.map((r) => r.cpuMsPerTransfer))),
    cpuMsPerMiB: median(nonNull(ok.map((r) => r.cpuMsPerMiB))),
    failures: failuresOf(rounds),
  };
}

/**
 * `a / b` for each round where both completed (rounds pair up by index: the
 * same round ran both within seconds of each other). For the spread of a
 * ratio, which the ratio of two medians hides.
 */
export function perRoundRatios(a: VariantResult | undefined, b: VariantResult | undefined, pick: (round: LoadRound & { ok: true }) => number | null): number[] {
  if (!a || !b) return [];
  const out: number[] = [];
  a.rounds.forEach((ra, i) => {
    const rb = b.rounds[i];
    if (!ra.ok || !rb?.ok || !('rps' in ra) || !('rps' in rb)) return;
    const x = pick(ra);
    const y = pick(rb);
    if (x !== null && y !== null && y !== 0) out.push(x / y);
  });
  return out;
}
