// Stops sandboxes nobody uses. The proxy reports traffic per sandbox
// (onActivity, at most once per activityInterval, and again each interval
// while a WebSocket or a long response stays open); the store keeps the time;
// this sweeps what has been quiet for longer than `idleAfterMs`.
import type { SandboxStore } from './sandboxes.ts';

export interface IdleReaperOptions {
  /** ms without reported activity after which a running sandbox is stopped. Keep it well above the proxy's activityInterval. */
  idleAfterMs: number;
  /** ms between two sweeps. */
  everyMs: number;
}

export function startIdleReaper(sandboxes: SandboxStore, options: IdleReaperOptions): { stop(): void } {
  const sweep = () => {
    const cutoff = Date.now() - options.idleAfterMs;
    for (const sandbox of sandboxes.list()) {
      if (sandbox.state === 'running' && sandbox.lastActiveAt < cutoff) void sandboxes.stop(sandbox.id);
    }
  };
  // unref: the sweep alone never keeps the process up.
  const timer = setInterval(sweep, options.everyMs).unref();
  return { stop: () => clearInterval(timer) };
}
