// Reads a V8 .cpuprofile and ranks where the time went: self time by
// function, and time attributed to the nearest frame outside Node's core
// (honest-proxy's src/, an npm package), since a proxy's own code mostly
// costs time inside node:http and node:events rather than in itself.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface Ranked {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  /** Self time per function. */
  functions: Ranked[];
  /** Self time per origin: src/ file, npm package, node internals, VM buckets. */
  selfOrigins: Ranked[];
  /** All time charged to the nearest non-core frame on the stack, by origin. */
  attributedOrigins: Ranked[];
  /** Inclusive time of honest-proxy's own functions (time with them on the stack). */
  srcInclusive: Ranked[];
}

function isCore(url: string): boolean {
  return !url || url.startsWith('node:');
}

/** Where a frame's code comes from: `src/<file>`, an npm package, `node internals`, or a VM bucket such as (garbage collector). */
export function originOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const pkg = /.*\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const src = /\/src\/(.+)$/.exec(url);
  if (src) return `honest-proxy src/${src[1]}`;
  return url.replace(/^file:\/\/.*\/bench\//, 'bench/');
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  if (!url) return functionName;
  const short = url.replace(/^file:\/\/.*?\/node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench)\//, '$1/');
  return `${functionName || '(anonymous)'} ${short}:${lineNumber + 1}`;
}

function add<K>(map: Map<K, number>, key: K, us: number): void {
  map.set(key, (map.get(key) ?? 0) + us);
}

function rank(totals: Map<string, number>, totalUs: number, limit: number): Ranked[] {
  return [...totals]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, us]) => ({ name, ms: us / 1000, share: us / totalUs }));
}

export function summarizeProfile(path: string, limit = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => add(selfUs, id, profile.timeDeltas[i] ?? 0));

  const functions = new Map<string, number>();
  const selfOrigins = new Map<string, number>();
  const attributed = new Map<string, number>();
  const srcInclusive = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const { functionName, url } = node.callFrame;
    totalUs += us;
    if (functionName === '(idle)') idleUs += us;
    add(functions, frameName(node), us);
    add(selfOrigins, originOf(url, functionName), us);

    // Walk up the stack once: find the nearest non-core frame, and note each
    // distinct src/ function on the way (recursion counted once).
    let owner: ProfileNode | undefined;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!;
      if (!owner && !isCore(frame.callFrame.url)) owner = frame;
      if (originOf(frame.callFrame.url, frame.callFrame.functionName).startsWith('honest-proxy src/')) seen.add(frameName(frame));
    }
    add(attributed, owner ? originOf(owner.callFrame.url, owner.callFrame.functionName) : originOf(url, functionName) === 'node internals' ? 'node internals (no library frame on the stack)' : originOf(url, functionName), us);
    for (const name of seen) add(srcInclusive, name, us);
  }
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    functions: rank(functions, totalUs, limit),
    selfOrigins: rank(selfOrigins, totalUs, limit),
    attributedOrigins: rank(attributed, totalUs, limit),
    srcInclusive: rank(srcInclusive, totalUs, limit),
  };
}

function section(heading: string, rows: Ranked[]): string[] {
  return [
    `| share | ms | ${heading} |`,
    '| ---: | ---: | --- |',
    ...rows.map((r) => `| ${(r.share * 100).toFixed(1)}% | ${r.ms.toFixed(0)} | ${r.name.replaceAll('|', '\\|')} |`),
    '',
  ];
}

/** What a profiled run did, counted: `{ count: 80000, name: 'request', plural: 'requests' }`, or the MiB of transfers. */
export interface Units {
  count: number;
  name: string;
  plural: string;
}

export function formatProfile(title: string, summary: ProfileSummary, units: Units): string {
  const busyMs = summary.totalMs - summary.idleMs;
  return [
    `#### ${title}`,
    '',
    `${summary.totalMs.toFixed(0)} ms sampled, ${busyMs.toFixed(0)} ms busy, ${units.count} ${units.plural}: ${((busyMs * 1000) / units.count).toFixed(1)} µs CPU per ${units.name}.`,
    '',
    ...section('self time by origin', summary.selfOrigins),
    ...section('time by nearest non-core frame (what caused the node:* work)', summary.attributedOrigins),
    ...section('inclusive time of honest-proxy src/ functions', summary.srcInclusive),
    ...section('top functions by self time', summary.functions),
  ].join('\n');
}
