// Core pinning: with two or more cores, every proxy child runs alone on the
// last core and the upstream and the bench (autocannon runs in it) share the
// others, so a proxy's CPU time per request is not bent by the load generator
// competing for its core. Linux only (taskset and /proc); elsewhere, or with
// --no-pin, the run is unpinned and says why.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((path) => existsSync(path)) ?? '/usr/bin/taskset';

export type Pinning =
  | {
      pinned: true;
      /** taskset core list for every proxy child. */
      proxyCpus: string;
      /** taskset core list for the upstream and the bench process. */
      otherCpus: string;
      /** What /proc says each part may run on, filled in as parts start: part -> core lists of its threads. */
      observed: Record<string, string[]>;
    }
  | { pinned: false; reason: string; observed: Record<string, string[]> };

/** "0-2,5" -> [0, 1, 2, 5] */
export function parseCpuList(list: string): number[] {
  return list
    .trim()
    .split(',')
    .filter(Boolean)
    .flatMap((part) => {
      const [from, to = from] = part.split('-').map(Number);
      return Array.from({ length: to! - from! + 1 }, (_, i) => from! + i);
    });
}

/** [0, 1, 2, 5] -> "0-2,5" */
export function formatCpuList(cpus: number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

function allowedList(statusFile: string): string | undefined {
  try {
    return /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(statusFile, 'utf8'))?.[1];
  } catch {
    return undefined; // a thread that ended between readdir and read
  }
}

/** The distinct core lists the threads of `pid` may run on (normalised), or [] without /proc. */
export function threadAffinity(pid: number): string[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const lists = tasks.map((task) => allowedList(`/proc/${pid}/task/${task}/status`)).filter((l): l is string => l !== undefined);
  return [...new Set(lists.map((l) => formatCpuList(parseCpuList(l))))];
}

/**
 * Decides the layout and pins the bench process itself (all its threads, so
 * autocannon's and the libuv pool's work stays off the proxy's core).
 * Children are pinned once they listen (ipc/parent.ts, `cpus`), before
 * anything of theirs is measured.
 */
export function setUpPinning(disabled: boolean): Pinning {
  const unpinned = (reason: string): Pinning => ({ pinned: false, reason, observed: {} });
  if (disabled) return unpinned('--no-pin was given');
  if (os.availableParallelism() < 2) return unpinned(`only ${os.availableParallelism()} core available`);
  if (os.platform() !== 'linux') return unpinned(`pinning needs Linux (taskset, /proc); this is ${os.platform()}`);
  if (!existsSync(TASKSET)) return unpinned('taskset not found (util-linux); install it to pin');
  // The cores this process may use, which a container's cpuset may have narrowed.
  const own = allowedList('/proc/self/status');
  const cpus = own ? parseCpuList(own) : Array.from({ length: os.availableParallelism() }, (_, i) => i);
  if (cpus.length < 2) return unpinned(`only core ${formatCpuList(cpus)} is allowed to this process`);
  const proxyCpus = String(cpus.at(-1));
  const otherCpus = formatCpuList(cpus.slice(0, -1));
  try {
    execFileSync(TASKSET, ['-a', '-cp', otherCpus, String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return unpinned(`taskset could not pin the bench: ${stderr || (err instanceof Error ? err.message : String(err))}`);
  }
  return { pinned: true, proxyCpus, otherCpus, observed: {} };
}

/** Pins every thread of `pid` (`taskset -a -cp`); threads it starts afterwards inherit the mask. */
export function pinProcess(pid: number, cpus: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(TASKSET, ['-a', '-cp', cpus, String(pid)], (err, _stdout, stderr) => {
      if (err) reject(new Error(`taskset -a -cp ${cpus} ${pid} failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

/** Records what /proc says about `pid`'s threads under `part`; returns a warning when they are not on `expected`. */
export function checkAffinity(pinning: Pinning, part: string, pid: number, expected: string | undefined): string | undefined {
  const seen = threadAffinity(pid);
  const known = (pinning.observed[part] ??= []);
  for (const list of seen) if (!known.includes(list)) known.push(list);
  if (!pinning.pinned || expected === undefined || seen.length === 0) return undefined;
  const want = formatCpuList(parseCpuList(expected));
  return seen.every((list) => list === want) ? undefined : `${part} (pid ${pid}) threads may run on ${seen.join(' / ')}, expected ${want} only`;
}

/** One line for the report: where each part ran, or why nothing was pinned. */
export function describePinning(pinning: Pinning): string {
  const seen = (part: string) => (pinning.observed[part]?.length ? `core ${pinning.observed[part]!.join(' / ')}` : 'not checked');
  if (!pinning.pinned) return `Unpinned: ${pinning.reason}. The proxy shares the cores with the upstream and the load generator, so CPU per request includes contention effects.`;
  return (
    `Pinned with taskset: every proxy child on core ${pinning.proxyCpus}; the upstream and the bench process (load generator) on core ${pinning.otherCpus}. ` +
    `Checked in /proc for every thread: proxies ${seen('proxies')}, upstream ${seen('upstream')}, bench ${seen('bench')}.`
  );
}
