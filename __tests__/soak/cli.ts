// `npm run soak`: the long soak, its figures printed. Exits 1 on any broken promise.
import { runSoak } from './soak.ts';

const requests = Number(process.env.SOAK_REQUESTS ?? 10_000);
const report = await runSoak({ requests, concurrency: 32, clientAbortRate: 0.05, seed: Number(process.env.SOAK_SEED ?? 1) });
console.log(JSON.stringify(report, null, 2));
console.log(
  `\n${report.requests} requests in ${(report.elapsedMs / 1000).toFixed(1)} s; proxy ${report.proxyAlive ? 'alive' : 'DEAD'}; ` +
    `fds ${report.fds.before} -> ${report.fds.after} (settled in ${report.fds.settledMs} ms); ` +
    `heap ${report.heapUsedMiB.afterWarmUp} -> ${report.heapUsedMiB.atEnd} MiB; violations ${report.violations.length}`,
);
process.exit(report.violations.length === 0 ? 0 : 1);
