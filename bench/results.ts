// The shape of a run's results (also the JSON written to bench/results/) and
// the reduction of rounds to medians.
import type { LoadSample } from './load/autocannon.ts';
import type { Scenario, Settings } from './scenarios.ts';

export const VARIANTS = ['direct', 'hpm', 'honest-proxy', 'express-http-proxy', 'fastify-http-proxy'] as const;
export type Variant = (typeof VARIANTS)[number];

/** How variants are named in tables. */
export const LABELS: Record<Variant, string> = {
  direct: 'direct',
  hpm: 'hpm (bare)',
  'honest-proxy': 'honest-proxy',
  'express-http-proxy': 'express-http-proxy',
  'fastify-http-proxy': '@fastify/http-proxy',
};

/** A failed round (the proxy crashed, a transfer broke) is kept with its reason, never dropped. */
export type Failed = { ok: false; error: string };

export type LoadRound =
  | (LoadSample & {
      ok: true;
      /** Null for `direct`: there is no proxy process. */
      peakRssMiB: number | null;
    })
  | Failed;

export type TransferRound =
  | { ok: true; seconds: number; mibPerSecond: number; baselineMiB: number | null; peakRssMiB: number | null; growthMiB: number | null }
  | Failed;

/** Medians over the rounds that completed; null when none did. */
export interface LoadSummary {
  kind: 'load';
  rps: number | null;
  p50: number | null;
  p99: number | null;
  peakRssMiB: number | null;
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
    failures: failuresOf(rounds),
  };
}
