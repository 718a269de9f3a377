// The child side of the protocol: announce the listening port, sample RSS, and
// answer the parent's mark/peak/usage requests. Shared by the upstream and
// every proxy variant so they are measured and shut down the same way.
import diagnosticsChannel from 'node:diagnostics_channel';
import { PerformanceObserver } from 'node:perf_hooks';
import type { ChildMessage, ParentMessage, PoolInfo } from './messages.ts';

const SAMPLE_INTERVAL_MS = 50;

function send(message: ChildMessage): void {
  process.send?.(message);
}

/**
 * Peak RSS since the last mark. Sampling starts at import so the first mark
 * already has a value; `memoryUsage.rss()` is the same number as
 * `memoryUsage().rss` without walking the V8 heap spaces on every tick.
 */
let peak = process.memoryUsage.rss();
function sample(): number {
  const rss = process.memoryUsage.rss();
  if (rss > peak) peak = rss;
  return rss;
}
// A busy event loop delays ticks, but RSS rarely falls back within 50 ms, so a
// late sample still sees the high-water mark; unref so it never keeps us alive.
setInterval(sample, SAMPLE_INTERVAL_MS).unref();

/**
 * TCP connections accepted by any server in this process. For the upstream
 * that is how many connections the proxy under load opened to it: a proxy
 * whose pool keeps its sockets opens none once warm. One call per connection,
 * nothing per request.
 */
let accepted = 0;
diagnosticsChannel.subscribe('net.server.socket', () => {
  accepted++;
});

/**
 * Milliseconds the main thread spent in garbage collection pauses since start
 * (V8's own timing of each collection, one performance entry per GC, nothing
 * per request). Beside CPU per request it tells garbage from other work: a
 * window whose CPU jumps along with its GC time made garbage; one whose GC
 * time stays flat lost its time elsewhere (JIT, scheduling, the kernel).
 */
let gcMillis = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMillis += entry.duration;
}).observe({ entryTypes: ['gc'] });

let pool: PoolInfo | null = null;
/** The first description wins: the variant's own (undici), else the one observed on the first upstream request. */
export function reportPool(info: PoolInfo): void {
  pool ??= info;
}

if (!process.send) {
  console.error('bench child: must be started by bench/run.ts (needs an IPC channel)');
  process.exit(2);
}

// If the parent dies without cleaning up (even SIGKILL), the IPC channel
// closes: leave with it so a run never strands a process.
process.on('disconnect', () => process.exit(0));

process.on('message', (message: ParentMessage) => {
  if (message.type === 'mark') {
    const rss = sample();
    peak = rss;
    send({ type: 'marked', rss });
  } else if (message.type === 'peak') {
    const rss = sample();
    send({ type: 'peak', peakRss: peak, rss });
  } else if (message.type === 'usage') {
    // getrusage(RUSAGE_SELF): every thread of the process, GC helpers and the libuv pool included.
    const { user, system } = process.cpuUsage();
    send({ type: 'usage', userMicros: user, systemMicros: system, gcMillis, accepted, pool });
  } else if (message.type === 'exit') {
    // process.exit, not a signal: --cpu-prof only writes its profile on a normal exit.
    process.exit(0);
  }
});

/** Runs `start` and reports its port (or its failure) to the parent. */
export async function announce(start: () => Promise<{ port: number; pool?: PoolInfo }>): Promise<void> {
  try {
    const { port, pool: declared } = await start();
    if (declared) reportPool(declared);
    send({ type: 'ready', port });
  } catch (err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    // Exit only once the message is out, or the parent sees a bare exit code.
    process.send?.({ type: 'failed', message } satisfies ChildMessage, () => process.exit(1));
  }
}
