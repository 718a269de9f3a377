// The idle-WebSocket bench: `npm run bench:websockets` (or
// `node bench/websockets.ts --count 500 --variants hpm,honest-proxy`).
// For each variant and count: an upstream `ws` server, the proxy (pinned to
// its own core, --expose-gc) and a client, each a process of its own. The
// client opens and closes a few WebSockets (warm-up), the proxy measures its
// heap after full collections, the client opens `count` WebSockets and leaves
// them idle, and the proxy measures again. The difference over `count` is
// what one open WebSocket keeps in the proxy.
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { checkAffinity, setUpPinning, type Pinning } from './pinning.ts';
import { writeResult } from './results-file.ts';
import { HOST } from './scenarios.ts';
import { FD_RESERVE, FDS_PER_WEBSOCKET, hardFileLimit, maxWebSockets } from './websockets/fd-limit.ts';
import type { MemorySample } from './websockets/messages.ts';
import { startChild, stopAllChildren, type Child } from './websockets/parent.ts';
import { isWebSocketVariant, WEBSOCKET_LABELS, WEBSOCKET_VARIANTS, type WebSocketVariant } from './websockets/variants.ts';

/** Opened and closed before the baseline, so lazily loaded modules, JIT code and pools first made for a WebSocket are not billed to each one. */
const WARM_UP = 100;
const DEFAULT_COUNTS = '3000,max';
const DEFAULT_VARIANTS = 'httpxy-raw,hpm,honest-proxy';
const SETTLE_TIMEOUT_MS = 20_000;
const KiB = 1024;
const MiB = 1024 * 1024;

const { values: flags } = parseArgs({
  options: {
    // Comma-separated; `max` is the most one proxy process can hold (fd-limit.ts).
    count: { type: 'string' },
    variants: { type: 'string' },
    // Writes a heap snapshot of each proxy before and with its WebSockets into this directory.
    snapshots: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    'keep-logs': { type: 'boolean', default: false },
  },
});

interface Row {
  variant: WebSocketVariant;
  count: number;
  before: MemorySample;
  after: MemorySample;
  heapPerWebSocketKiB: number;
  rssPerWebSocketKiB: number;
}

const t0 = Date.now();
const progress = (line: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${line}\n`);

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it holds, or fails with `what` after SETTLE_TIMEOUT_MS. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await pause(50);
  }
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

interface Layout {
  pinning: Pinning;
  hardLimit: number;
  logDir: string;
  snapshotDir: string | undefined;
}

async function measure(variant: WebSocketVariant, count: number, layout: Layout): Promise<Row> {
  const { pinning, hardLimit, logDir, snapshotDir } = layout;
  const proxyCpus = pinning.pinned ? pinning.proxyCpus : undefined;
  const otherCpus = pinning.pinned ? pinning.otherCpus : undefined;
  const common = { fileLimit: hardLimit, args: [] as string[] };
  const children: Child[] = [];
  const start = async (name: string, script: string, extra: Partial<Parameters<typeof startChild>[0]>) => {
    const child = await startChild({ ...common, name, script: new URL(script, import.meta.url), logFile: join(logDir, `${count}-${variant}-${name}.log`), ...extra });
    children.push(child);
    return child;
  };
  try {
    const upstream = await start('upstream', './websockets/upstream.ts', { cpus: otherCpus });
    const proxy = await start('proxy', './websockets/proxy.ts', { args: [variant, `http://127.0.0.1:${upstream.port}`], execArgv: ['--expose-gc'], cpus: proxyCpus });
    const client = await start('client', './websockets/client.ts', { args: [String(proxy.port), HOST], cpus: otherCpus });
    for (const [part, pid, cpus] of [['proxy', proxy.pid, proxyCpus], ['upstream', upstream.pid, otherCpus], ['client', client.pid, otherCpus]] as const) {
      const wrong = checkAffinity(pinning, part, pid, cpus);
      if (wrong) progress(`WARNING: ${wrong}`);
    }

    const idleFds = openFds(proxy.pid);
    const warm = await client.ask({ type: 'open', count: WARM_UP });
    if (warm.failed) throw new Error(`${variant}: ${warm.failed} of ${WARM_UP} warm-up WebSockets failed to open: ${warm.firstError}`);
    await client.ask({ type: 'closeAll' });
    await until(`${variant} closed the warm-up WebSockets`, async () => (await upstream.ask({ type: 'count' })).open === 0 && openFds(proxy.pid) <= idleFds);

    const before = await proxy.ask({ type: 'sample' });
    if (snapshotDir) progress(`snapshot ${(await proxy.ask({ type: 'snapshot', file: join(snapshotDir, `${variant}-${count}-before.heapsnapshot`) })).file}`);
    const opened = await client.ask({ type: 'open', count });
    if (opened.failed) throw new Error(`${variant}: ${opened.failed} of ${count} WebSockets failed to open: ${opened.firstError}`);
    await until(`the upstream holds all ${count} WebSockets of ${variant}`, async () => (await upstream.ask({ type: 'count' })).open === count);
    const after = await proxy.ask({ type: 'sample' });
    if (snapshotDir) progress(`snapshot ${(await proxy.ask({ type: 'snapshot', file: join(snapshotDir, `${variant}-${count}-open.heapsnapshot`) })).file}`);
    return {
      variant,
      count,
      before,
      after,
      heapPerWebSocketKiB: (after.heapUsed - before.heapUsed) / count / KiB,
      rssPerWebSocketKiB: (after.rss - before.rss) / count / KiB,
    };
  } finally {
    await Promise.all(children.map((child) => child.stop()));
  }
}

/** Starts a variant's three children once and stops them, measuring nothing. */
async function prime(variant: WebSocketVariant, layout: Layout): Promise<void> {
  const children: Child[] = [];
  const start = async (name: string, script: string, args: string[]) => {
    const child = await startChild({ name, script: new URL(script, import.meta.url), args, fileLimit: layout.hardLimit, logFile: join(layout.logDir, `prime-${variant}-${name}.log`), execArgv: ['--expose-gc'] });
    children.push(child);
    return child;
  };
  try {
    const upstream = await start('upstream', './websockets/upstream.ts', []);
    const proxy = await start('proxy', './websockets/proxy.ts', [variant, `http://127.0.0.1:${upstream.port}`]);
    await start('client', './websockets/client.ts', [String(proxy.port), HOST]);
  } finally {
    await Promise.all(children.map((child) => child.stop()));
  }
}

function parseCounts(list: string, max: number): number[] {
  return list.split(',').map((item) => {
    const count = item.trim() === 'max' ? max : Number(item);
    if (!Number.isInteger(count) || count < 1) throw new Error(`--count: ${item} is not a whole number of WebSockets, nor 'max'`);
    if (count > max) throw new Error(`--count ${count}: at most ${max} fit in one proxy process (see the report's fd note); use 'max'`);
    return count;
  });
}

function parseVariants(list: string): WebSocketVariant[] {
  const wanted = list.split(',').map((s) => s.trim());
  const unknown = wanted.filter((name) => !isWebSocketVariant(name));
  if (unknown.length) throw new Error(`unknown variant: ${unknown.join(', ')}; known: ${WEBSOCKET_VARIANTS.join(', ')}`);
  return wanted as WebSocketVariant[];
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1);
const count = (n: number) => n.toLocaleString('en-US');

function report(rows: Row[], hardLimit: number, max: number, pinning: Pinning): string {
  const lines = [
    '## Idle WebSockets',
    '',
    `${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}. ` +
      `Heap: \`heapUsed\` after four full collections (\`gc()\`), once after ${WARM_UP} WebSockets were opened and closed and once with the WebSockets open and idle; ` +
      'per WebSocket is the difference over their count. RSS the same way: it adds what lives outside the V8 heap (socket handles, buffers, ' +
      'free heap pages V8 keeps), not the kernel\'s socket buffers.',
    '',
    '| variant | open WebSockets | heap MiB (before -> open) | heap KiB per WebSocket | RSS MiB (before -> open) | RSS KiB per WebSocket | proxy fds open |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) =>
      `| ${WEBSOCKET_LABELS[r.variant]} | ${count(r.count)} | ${mib(r.before.heapUsed)} -> ${mib(r.after.heapUsed)} | ${r.heapPerWebSocketKiB.toFixed(2)} | ` +
      `${mib(r.before.rss)} -> ${mib(r.after.rss)} | ${r.rssPerWebSocketKiB.toFixed(2)} | ${count(r.after.fds)} |`,
    ),
    '',
  ];
  for (const n of [...new Set(rows.map((r) => r.count))]) {
    const hpm = rows.find((r) => r.count === n && r.variant === 'hpm');
    const honest = rows.find((r) => r.count === n && r.variant === 'honest-proxy');
    if (!hpm || !honest) continue;
    const verdict = honest.heapPerWebSocketKiB <= hpm.heapPerWebSocketKiB ? 'PASS' : 'MISS';
    lines.push(`- ${count(n)} WebSockets: honest-proxy ${honest.heapPerWebSocketKiB.toFixed(2)} KiB of heap per WebSocket, hpm ${hpm.heapPerWebSocketKiB.toFixed(2)}: ${verdict} (target: honest-proxy <= hpm).`);
  }
  lines.push(
    `- Not 10,000: the hard descriptor limit here is ${Number.isFinite(hardLimit) ? count(hardLimit) : 'unlimited'} per process ` +
      `and cannot be raised from inside (raising it needs CAP_SYS_RESOURCE). The proxy holds ${FDS_PER_WEBSOCKET} descriptors per WebSocket ` +
      `(the client's socket and the upstream's), so with ${FD_RESERVE} kept for everything else at most ${Number.isFinite(max) ? count(max) : 'any number'} fit in one proxy process. ` +
      'Each child runs with its soft limit raised to the hard one.',
    pinning.pinned
      ? `- Pinned with taskset: the proxy on core ${pinning.proxyCpus}; the upstream, the client and the bench on core ${pinning.otherCpus}.`
      : `- Unpinned: ${pinning.reason}.`,
  );
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const hardLimit = hardFileLimit();
  const max = maxWebSockets(hardLimit);
  const counts = parseCounts(flags.count ?? DEFAULT_COUNTS, max);
  const variants = parseVariants(flags.variants ?? DEFAULT_VARIANTS);
  const filtered = Boolean(flags.count || flags.variants || flags.snapshots);
  const pinning = setUpPinning(flags['no-pin']);
  const runDir = mkdtempSync(join(os.tmpdir(), 'honest-proxy-websockets-'));
  const logDir = join(runDir, 'logs');
  mkdirSync(logDir);
  process.env.NODE_COMPILE_CACHE = join(runDir, 'compile-cache');
  const snapshotDir = flags.snapshots;
  if (snapshotDir) {
    mkdirSync(snapshotDir, { recursive: true });
    progress('with --snapshots the heap numbers are not comparable: a snapshot taken between the two samples leaves garbage and grown heap spaces behind');
  }
  progress(`idle WebSockets: ${counts.map(count).join(', ')} x ${variants.join(', ')}; descriptor hard limit ${hardLimit}, at most ${max} per proxy; logs in ${logDir}`);

  const rows: Row[] = [];
  let failed = false;
  try {
    // The first process to load a variant compiles it and fills the compile
    // cache; later ones load less code into the heap. Every measured child
    // should find the cache as warm as the next.
    for (const variant of variants) await prime(variant, { pinning, hardLimit, logDir, snapshotDir: undefined });
    for (const n of counts) {
      for (const variant of variants) {
        const row = await measure(variant, n, { pinning, hardLimit, logDir, snapshotDir });
        progress(`${variant} x ${count(n)}: ${row.heapPerWebSocketKiB.toFixed(2)} KiB heap, ${row.rssPerWebSocketKiB.toFixed(2)} KiB RSS per WebSocket; RSS ${mib(row.after.rss)} MiB`);
        rows.push(row);
      }
    }
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await stopAllChildren();
    if (failed || flags['keep-logs']) progress(`child logs kept in ${logDir}`);
    else rmSync(runDir, { recursive: true, force: true });
  }

  const text = report(rows, hardLimit, max, pinning);
  process.stdout.write(text);
  if (!filtered) {
    writeResult('websockets.json', `${JSON.stringify({ date: new Date().toISOString(), node: process.version, hardLimit, max, pinning, rows }, null, 2)}\n`);
    progress(`results written to ${writeResult('websockets.md', text).replace(/\.md$/, '.{json,md}')}`);
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void stopAllChildren().finally(() => process.exit(130)));
}

try {
  await main();
} catch (err) {
  await stopAllChildren();
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
}
