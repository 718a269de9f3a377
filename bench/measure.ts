// One scenario, all variants, all rounds. Variants run interleaved and the
// order rotates each round (A B C, B C A, ...), so drift over time and
// "first after a pause" effects land on every variant alike.
import { runLoad } from './load/autocannon.ts';
import { runTransfers } from './load/transfer.ts';
import { MiB } from './ipc/messages.ts';
import type { Child } from './ipc/parent.ts';
import { startProxies } from './proxies.ts';
import { summarizeLoad, summarizeTransfer, type Failed, type LoadRound, type ScenarioResult, type TransferRound, type Variant } from './results.ts';
import { HOST, type LoadScenario, type Settings, type TransferScenario } from './scenarios.ts';

export interface Context {
  settings: Settings;
  upstreamPort: number;
  /** A loopback port nothing listens on. */
  deadPort: number;
  logDir: string;
  variants: readonly Variant[];
  progress: (line: string) => void;
  warn: (line: string) => void;
}

const TRANSFER_TIMEOUT_MS = 120_000;
const TRANSFER_WARMUP_BYTES = 4 * MiB;

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = items.length ? by % items.length : 0;
  return [...items.slice(k), ...items.slice(0, k)];
}

function toMiB(bytes: number): number {
  return bytes / MiB;
}

/** A failed round; when the proxy died under it, its own last words say why. */
function failed(err: unknown, child: Child | undefined): Failed {
  const message = err instanceof Error ? err.message : String(err);
  const crash = child?.crashReport();
  return { ok: false, error: crash && !message.includes(crash) ? `${message}; ${crash}` : message };
}

/**
 * Runs one measured round. A failure (a proxy that died, a transfer that
 * broke) is recorded with the proxy's last words instead of ending the run.
 */
async function runRound<T extends { ok: true }>(
  label: string,
  child: Child | undefined,
  ctx: Context,
  measure: () => Promise<T>,
  describe: (result: T) => string,
): Promise<T | Failed> {
  try {
    const result = await measure();
    ctx.progress(`${label}: ${describe(result)}`);
    return result;
  } catch (err) {
    // A proxy that died mid-run breaks the client's sockets a moment before its exit is seen.
    await child?.settle(300);
    const result = failed(err, child);
    ctx.progress(`${label}: FAILED ${result.error}`);
    return result;
  }
}

function portOf(child: Child | undefined, ctx: Context): number {
  return child?.port ?? ctx.upstreamPort;
}

export async function measureLoad(scenario: LoadScenario, ctx: Context): Promise<ScenarioResult> {
  // On the error path `direct` would only measure refused connects: n/a.
  const variants = ctx.variants.filter((v) => !(scenario.deadUpstream && v === 'direct'));
  const target = `http://127.0.0.1:${scenario.deadUpstream ? ctx.deadPort : ctx.upstreamPort}`;
  const body = scenario.bodyBytes ? Buffer.alloc(scenario.bodyBytes, 'p') : undefined;
  const rounds = new Map<Variant, LoadRound[]>(variants.map((v) => [v, []]));
  const load = (port: number, seconds: number) =>
    runLoad({ port, host: HOST, method: scenario.method, path: scenario.path, body, connections: scenario.connections, seconds });

  const proxies = await startProxies(variants, target, ctx.logDir, scenario.id);
  try {
    proxies.warnings.forEach(ctx.warn);
    // A warm-up failure shows up again, recorded, in the measured rounds.
    for (const variant of variants) await load(portOf(proxies.get(variant), ctx), ctx.settings.warmupSeconds).catch(() => undefined);
    for (let round = 0; round < ctx.settings.rounds; round++) {
      for (const variant of rotate(variants, round)) {
        const child = proxies.get(variant);
        const result: LoadRound = await runRound(
          `${scenario.id} round ${round + 1}/${ctx.settings.rounds} ${variant}`,
          child,
          ctx,
          async () => {
            await child?.mark();
            const sample = await load(portOf(child, ctx), ctx.settings.loadSeconds);
            const peak = child ? await child.peak() : null;
            return { ok: true as const, ...sample, peakRssMiB: peak === null ? null : toMiB(peak) };
          },
          (r) => `${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms`,
        );
        rounds.get(variant)!.push(result);
      }
    }
  } finally {
    await proxies.stop();
  }
  return {
    scenario,
    variants: ctx.variants.map((variant) => {
      const r = rounds.get(variant);
      return r ? { variant, applicable: true, rounds: r, summary: summarizeLoad(r) } : { variant, applicable: false, rounds: [], summary: null };
    }),
  };
}

/**
 * Fresh proxy processes every round: RSS rarely shrinks after a big transfer,
 * so a reused process would show little growth the second time even if it
 * buffered the whole body.
 */
export async function measureTransfer(scenario: TransferScenario, ctx: Context): Promise<ScenarioResult> {
  const rounds = new Map<Variant, TransferRound[]>(ctx.variants.map((v) => [v, []]));
  const transfer = (port: number, bytes: number) =>
    runTransfers({ port, host: HOST, direction: scenario.direction, bytes, concurrency: scenario.concurrency, timeoutMs: TRANSFER_TIMEOUT_MS });

  for (let round = 0; round < ctx.settings.rounds; round++) {
    const proxies = await startProxies(ctx.variants, `http://127.0.0.1:${ctx.upstreamPort}`, ctx.logDir, `${scenario.id}-${round + 1}`);
    try {
      if (round === 0) proxies.warnings.forEach(ctx.warn);
      // Load the streaming code paths before the baseline; a failure here
      // shows up again, recorded, in the measured transfer.
      for (const variant of ctx.variants) await transfer(portOf(proxies.get(variant), ctx), TRANSFER_WARMUP_BYTES).catch(() => undefined);
      for (const variant of rotate(ctx.variants, round)) {
        const child = proxies.get(variant);
        const result: TransferRound = await runRound(
          `${scenario.id} round ${round + 1}/${ctx.settings.rounds} ${variant}`,
          child,
          ctx,
          async () => {
            const baseline = child ? await child.mark() : null;
            const sample = await transfer(portOf(child, ctx), scenario.bytes);
            const peak = child ? await child.peak() : null;
            return {
              ok: true as const,
              ...sample,
              baselineMiB: baseline === null ? null : toMiB(baseline),
              peakRssMiB: peak === null ? null : toMiB(peak),
              growthMiB: baseline === null || peak === null ? null : toMiB(peak - baseline),
            };
          },
          (r) => `${r.mibPerSecond.toFixed(0)} MiB/s, RSS +${r.growthMiB?.toFixed(1) ?? 'n/a'} MiB`,
        );
        rounds.get(variant)!.push(result);
      }
    } finally {
      await proxies.stop();
    }
  }
  return {
    scenario,
    variants: ctx.variants.map((variant) => {
      const r = rounds.get(variant)!;
      return { variant, applicable: true, rounds: r, summary: summarizeTransfer(r) };
    }),
  };
}
