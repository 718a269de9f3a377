// One scenario, all variants, all rounds. Variants run interleaved, in a new
// order each round (roundOrder), so drift over time, "first after a pause"
// and whatever one window leaves to the next land on every variant alike.
import { runLoad } from './load/autocannon.ts';
import { runTransfers } from './load/transfer.ts';
import { MiB, type PoolInfo } from './ipc/messages.ts';
import type { Child, Usage } from './ipc/parent.ts';
import { checkAffinity, type Pinning } from './pinning.ts';
import { startProxies, type ProxySet } from './proxies.ts';
import { NOT_ON_ERROR_PATH, summarizeLoad, summarizeTransfer, type Failed, type LoadRound, type ScenarioResult, type TransferRound, type Variant, type WindowCost } from './results.ts';
import { HOST, type LoadScenario, type Settings, type TransferScenario } from './scenarios.ts';

export interface Context {
  settings: Settings;
  upstream: Child;
  upstreamPort: number;
  /** A loopback port nothing listens on. */
  deadPort: number;
  logDir: string;
  variants: readonly Variant[];
  pinning: Pinning;
  /** Called with each variant's upstream pool once its child has seen it. */
  notePool: (variant: Variant, pool: PoolInfo) => void;
  progress: (line: string) => void;
  warn: (line: string) => void;
}

const TRANSFER_TIMEOUT_MS = 120_000;
const TRANSFER_WARMUP_BYTES = 4 * MiB;

/**
 * The order of the variants in round `round`: rows of a Williams design
 * (0, n-1, 1, n-2, ... shifted by one every second round, every odd round
 * reversed), so that each variant runs at a different place and after a
 * different neighbour from round to round. A plain rotation (A B C, B C A,
 * ...) keeps every variant's predecessor fixed, and a carry-over from one
 * window into the next then lands on the same variant every round: in two
 * full runs and a third with the two honest-proxy variants swapped, the one
 * right after bare hpm, whichever it was, paid 10-25% more CPU per request
 * than the one after it.
 */
function roundOrder<T>(items: readonly T[], round: number): T[] {
  const n = items.length;
  const base: number[] = [];
  for (let low = 0, high = n - 1; base.length < n; ) {
    base.push(low++);
    if (base.length < n) base.push(high--);
  }
  const row = base.map((i) => items[(i + Math.floor(round / 2)) % n]!);
  return round % 2 ? row.reverse() : row;
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

async function proxiesFor(variants: readonly Variant[], target: string, ctx: Context, tag: string): Promise<ProxySet> {
  const proxies = await startProxies(variants, target, ctx.logDir, tag, [], ctx.pinning.pinned ? ctx.pinning.proxyCpus : undefined);
  // Checked, not assumed: every thread of every child on the proxy core.
  for (const variant of variants) {
    const child = proxies.get(variant);
    const wrong = child && checkAffinity(ctx.pinning, 'proxies', child.pid, ctx.pinning.pinned ? ctx.pinning.proxyCpus : undefined);
    if (wrong) ctx.warn(wrong);
  }
  return proxies;
}

interface Snapshot {
  proxy: Usage | null;
  upstream: Usage;
}

/** The proxy's and the upstream's counters at one instant, asked for together. */
async function snapshot(child: Child | undefined, ctx: Context): Promise<Snapshot> {
  const [proxy, upstream] = await Promise.all([child ? child.usage() : null, ctx.upstream.usage()]);
  return { proxy, upstream };
}

/** Both processes' CPU over a window, and the upstream connections the proxy opened in it. */
function costOf(variant: Variant, before: Snapshot, after: Snapshot, ctx: Context): WindowCost {
  if (after.proxy?.pool) ctx.notePool(variant, after.proxy.pool);
  return {
    cpuMicros: before.proxy && after.proxy ? after.proxy.cpuMicros - before.proxy.cpuMicros : null,
    gcMicros: before.proxy && after.proxy ? after.proxy.gcMicros - before.proxy.gcMicros : null,
    upstreamCpuMicros: after.upstream.cpuMicros - before.upstream.cpuMicros,
    upstreamConnections: after.upstream.accepted - before.upstream.accepted,
  };
}

const QUIET_POLL_MS = 25;
const QUIET_MAX_MS = 1_000;
/** A process using less than this share of a core between two polls counts as idle. */
const QUIET_SHARE = 0.05;

/**
 * Waits (bounded) until the proxy and the upstream have stopped working off
 * the requests still in flight when the client stopped, and their garbage:
 * every proxy shares one core, so that tail would otherwise run into the
 * next variant's window, and the upstream connections it opens would be
 * counted there.
 */
async function quiesce(child: Child | undefined, ctx: Context): Promise<void> {
  let last = await snapshot(child, ctx);
  for (let waited = 0; waited < QUIET_MAX_MS; waited += QUIET_POLL_MS) {
    await new Promise((resolve) => setTimeout(resolve, QUIET_POLL_MS));
    const now = await snapshot(child, ctx);
    const busiest = Math.max(now.upstream.cpuMicros - last.upstream.cpuMicros, now.proxy && last.proxy ? now.proxy.cpuMicros - last.proxy.cpuMicros : 0);
    last = now;
    if (busiest < QUIET_SHARE * QUIET_POLL_MS * 1000) return;
  }
}

function fixed(value: number | null, digits: number): string {
  return value === null ? 'n/a' : value.toFixed(digits);
}

export async function measureLoad(scenario: LoadScenario, ctx: Context): Promise<ScenarioResult> {
  const variants = ctx.variants.filter((v) => !(scenario.deadUpstream && NOT_ON_ERROR_PATH.includes(v)));
  const target = `http://127.0.0.1:${scenario.deadUpstream ? ctx.deadPort : ctx.upstreamPort}`;
  const body = scenario.bodyBytes ? Buffer.alloc(scenario.bodyBytes, 'p') : undefined;
  const rounds = new Map<Variant, LoadRound[]>(variants.map((v) => [v, []]));
  const load = (port: number, seconds: number) =>
    runLoad({ port, host: HOST, method: scenario.method, path: scenario.path, body, connections: scenario.connections, seconds });

  const proxies = await proxiesFor(variants, target, ctx, scenario.id);
  try {
    // A warm-up failure shows up again, recorded, in the measured rounds.
    for (const variant of variants) {
      const child = proxies.get(variant);
      await load(portOf(child, ctx), ctx.settings.warmupSeconds).catch(() => undefined);
      await quiesce(child, ctx).catch(() => undefined);
    }
    for (let round = 0; round < ctx.settings.rounds; round++) {
      for (const variant of roundOrder(variants, round)) {
        const child = proxies.get(variant);
        const result: LoadRound = await runRound(
          `${scenario.id} round ${round + 1}/${ctx.settings.rounds} ${variant}`,
          child,
          ctx,
          async () => {
            await child?.mark();
            const before = await snapshot(child, ctx);
            const sample = await load(portOf(child, ctx), ctx.settings.loadSeconds);
            const after = await snapshot(child, ctx);
            const peak = child ? await child.peak() : null;
            const cost = costOf(variant, before, after, ctx);
            await quiesce(child, ctx);
            return {
              ok: true as const,
              ...sample,
              ...cost,
              peakRssMiB: peak === null ? null : toMiB(peak),
              cpuMicrosPerRequest: cost.cpuMicros === null || sample.requests === 0 ? null : cost.cpuMicros / sample.requests,
              gcMicrosPerRequest: cost.gcMicros === null || sample.requests === 0 ? null : cost.gcMicros / sample.requests,
            };
          },
          (r) => `${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms, CPU ${fixed(r.cpuMicrosPerRequest, 0)} µs/req (GC ${fixed(r.gcMicrosPerRequest, 0)}), ${r.upstreamConnections} upstream conns${r.non2xx || r.errors || r.timeouts ? `, ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts` : ''}`,
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
    const proxies = await proxiesFor(ctx.variants, `http://127.0.0.1:${ctx.upstreamPort}`, ctx, `${scenario.id}-${round + 1}`);
    try {
      // Load the streaming code paths before the baseline; a failure here
      // shows up again, recorded, in the measured transfer.
      for (const variant of ctx.variants) await transfer(portOf(proxies.get(variant), ctx), TRANSFER_WARMUP_BYTES).catch(() => undefined);
      for (const variant of roundOrder(ctx.variants, round)) {
        const child = proxies.get(variant);
        const result: TransferRound = await runRound(
          `${scenario.id} round ${round + 1}/${ctx.settings.rounds} ${variant}`,
          child,
          ctx,
          async () => {
            const baseline = child ? await child.mark() : null;
            const before = await snapshot(child, ctx);
            const sample = await transfer(portOf(child, ctx), scenario.bytes);
            const after = await snapshot(child, ctx);
            const peak = child ? await child.peak() : null;
            const cost = costOf(variant, before, after, ctx);
            const cpuMs = cost.cpuMicros === null ? null : cost.cpuMicros / 1000;
            return {
              ok: true as const,
              ...sample,
              ...cost,
              cpuMsPerTransfer: cpuMs === null ? null : cpuMs / scenario.concurrency,
              cpuMsPerMiB: cpuMs === null ? null : cpuMs / toMiB(scenario.bytes * scenario.concurrency),
              baselineMiB: baseline === null ? null : toMiB(baseline),
              peakRssMiB: peak === null ? null : toMiB(peak),
              growthMiB: baseline === null || peak === null ? null : toMiB(peak - baseline),
            };
          },
          (r) => `${r.mibPerSecond.toFixed(0)} MiB/s, RSS +${r.growthMiB?.toFixed(1) ?? 'n/a'} MiB, CPU ${fixed(r.cpuMsPerTransfer, 0)} ms`,
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
