// Starting and stopping a set of proxy children together, so a scenario's
// variants are alive (and idle) side by side and interleaving costs no spawns.
import { join } from 'node:path';
import { startChild, type Child } from './ipc/parent.ts';
import type { Variant } from './results.ts';

const PROXY_CHILD = new URL('./proxy-child.ts', import.meta.url);

export interface ProxySet {
  /** Undefined for `direct`, which has no proxy process. */
  get(variant: Variant): Child | undefined;
  stop(): Promise<void>;
}

/** `cpus`: a taskset core list every child is started on (see pinning.ts); none for an unpinned run. */
export async function startProxies(variants: readonly Variant[], target: string, logDir: string, tag: string, execArgv: string[] = [], cpus?: string): Promise<ProxySet> {
  const proxied = variants.filter((v) => v !== 'direct');
  const started = await Promise.allSettled(
    proxied.map((variant) =>
      startChild({ name: variant, script: PROXY_CHILD, args: [variant, target], logFile: join(logDir, `${variant}--${tag}.log`), execArgv, cpus }),
    ),
  );
  const children = new Map<Variant, Child>();
  started.forEach((s, i) => {
    if (s.status === 'fulfilled') children.set(proxied[i]!, s.value);
  });
  const stop = async () => {
    await Promise.all([...children.values()].map((c) => c.stop()));
  };
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return {
    get: (variant) => children.get(variant),
    stop,
  };
}
