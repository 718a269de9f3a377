import { runSoak } from './soak/soak.ts';

// The short form of `npm run soak`, so every CI run injects faults too.
describe('fault-injection soak', () => {
  it('survives random upstream faults and client aborts with every promise kept', async () => {
    const report = await runSoak({ requests: 1500, concurrency: 24, clientAbortRate: 0.05, seed: 20261201 });
    expect(report.violations).toEqual([]);
    expect(report.proxyAlive).toBe(true);
    expect(report.requests).toBe(1500);
    // Every fault was really injected, and not just once.
    for (const fault of ['ok', 'drip', 'reset-mid-body', 'hang', 'garbage-status', 'early-close']) expect(report.faults[fault]).toBeGreaterThan(20);
    expect(report.clientAborts).toBeGreaterThan(20);
    expect(report.fds.after).toBeLessThanOrEqual(report.fds.before);
    expect(report.heapUsedMiB.atEnd - report.heapUsedMiB.afterWarmUp).toBeLessThan(16);
    // Upstream faults are warnings; an error record would be a bug of ours.
    expect(report.proxyRecords.error).toBeUndefined();
  }, 60_000);
});
