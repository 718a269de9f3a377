// Identical upstream failures folded in the log: a retry storm against a dead
// sandbox costs one full record and one count a window, not one record a
// request. Every client still gets its own 502 with Proxy-Status.
import http from 'node:http';
import { createProxy, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import { get, isAnswer, openWebSocket, sleep, startFront, waitFor, type Front } from './helpers/route-lookup.ts';
import { closedPort, listen, type Running } from './helpers/servers.ts';

const warnings = (records: LogRecord[]) => records.filter((r) => r.level === 'warn');

describe.each(EXPRESS_VERSIONS)('foldRepeatedFailures, %s', (_name, express) => {
  const running: Running[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.close()));
  });

  async function front(options: Partial<ProxyOptions>): Promise<{ front: Front; records: LogRecord[] }> {
    const { logger, records } = captureLogs('info');
    const started = await startFront(express, { logger, rateLimit: false, ...options } as ProxyOptions);
    running.push({ ...started, close: async () => { await started.proxy.close({ timeout: 100 }); await started.close(); } });
    return { front: started, records };
  }

  it('a dead upstream hit 12 times in a window: 12 answers with Proxy-Status, one full record, then one with folded: 11', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const { front: proxy, records } = await front({ routes: { 'dead.test': dead }, foldRepeatedFailures: 300 });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => get(proxy.port, 'dead.test', `/preview/item/${i}`)));
    for (const answer of answers) {
      expect(answer.status).toBe(502);
      expect(answer.headers['proxy-status']).toBe('proxy; error=connection_refused');
      expect(answer.body).toBe('Bad Gateway');
    }
    const full = warnings(records);
    expect(full).toHaveLength(1);
    expect(full[0]).toMatchObject({ code: 'UPSTREAM_UNREACHABLE', host: 'dead.test', upstream: dead, requestId: answers.map((a) => a.headers['x-request-id']).find((id) => id === full[0]!.requestId) });
    expect(full[0]!.folded).toBeUndefined();

    await waitFor(() => warnings(records).length === 2, 2000, 'the folded count');
    const summary = warnings(records)[1]!;
    expect(summary).toMatchObject({ code: 'UPSTREAM_UNREACHABLE', status: 502, proxyStatus: 'connection_refused', host: 'dead.test', upstream: dead, folded: 11, windowMs: 300 });
    expect(summary.cause).toMatchObject({ code: 'ECONNREFUSED' });
    expect(summary.message).toBe('upstream request failed: ECONNREFUSED (11 more in 300 ms, folded)');
    // A refused connect is the same whatever the path: no path in the fold.
    expect(summary.path).toBeUndefined();

    // The window closed: the next failure is logged in full again, and a window with nothing folded ends without a record.
    expect((await get(proxy.port, 'dead.test')).status).toBe(502);
    expect(warnings(records)).toHaveLength(3);
    expect(warnings(records)[2]!.folded).toBeUndefined();
    await sleep(450);
    expect(warnings(records)).toHaveLength(3);
  });

  it('failures of different upstreams, or of different causes, are not folded together', async () => {
    const deadA = `http://127.0.0.1:${await closedPort()}`;
    const deadB = `http://127.0.0.1:${await closedPort()}`;
    const { front: proxy, records } = await front({ routes: { 'a.test': deadA, 'b.test': deadB, 'nowhere.test': 'http://no-such-host.invalid' }, foldRepeatedFailures: 5_000 });
    for (const host of ['a.test', 'b.test', 'nowhere.test', 'a.test', 'b.test', 'nowhere.test']) expect((await get(proxy.port, host)).status).toBe(502);
    expect(warnings(records).map((r) => [r.host, (r.cause as { code?: string }).code])).toEqual([
      ['a.test', 'ECONNREFUSED'],
      ['b.test', 'ECONNREFUSED'],
      ['nowhere.test', 'ENOTFOUND'],
    ]);
  });

  it('a timeout is folded per method and path: one slow endpoint is not another', async () => {
    const hanging = http.createServer(() => {});
    const upstream = await listen(hanging);
    running.push({ ...upstream, close: async () => { hanging.closeAllConnections(); await upstream.close(); } });
    const { front: proxy, records } = await front({ routes: { 'slow.test': upstream.url }, timeouts: { response: 50 }, foldRepeatedFailures: 5_000 });
    for (const path of ['/preview/a', '/preview/b', '/preview/a', '/preview/a']) expect((await get(proxy.port, 'slow.test', path)).status).toBe(504);
    expect(warnings(records).map((r) => r.path)).toEqual(['/preview/a', '/preview/b']);

    // close() writes what is still folded, without waiting for the window.
    await running.pop()!.close();
    expect(warnings(records).slice(2)).toEqual([expect.objectContaining({ code: 'UPSTREAM_TIMEOUT', method: 'GET', path: '/preview/a', folded: 2, windowMs: 5_000 })]);
  });

  it('WebSocket upgrades to a dead upstream are folded with the HTTP requests', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const { front: proxy, records } = await front({ routes: { 'dead.test': dead }, foldRepeatedFailures: 5_000 });
    for (let i = 0; i < 3; i++) {
      const refused = await openWebSocket(proxy.port, 'dead.test');
      expect(isAnswer(refused) && refused.status).toBe(502);
    }
    expect((await get(proxy.port, 'dead.test')).status).toBe(502);
    expect(warnings(records)).toHaveLength(1);
    await running.pop()!.close();
    expect(warnings(records)[1]).toMatchObject({ code: 'UPSTREAM_UNREACHABLE', folded: 3 });
  });

  it('false logs every failure', async () => {
    const { front: proxy, records } = await front({ routes: { 'dead.test': `http://127.0.0.1:${await closedPort()}` }, foldRepeatedFailures: false });
    for (let i = 0; i < 5; i++) expect((await get(proxy.port, 'dead.test')).status).toBe(502);
    expect(warnings(records)).toHaveLength(5);
    expect(warnings(records).every((r) => r.folded === undefined)).toBe(true);
  });

  it('records below warn are never folded: each 429 keeps its record', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const { front: proxy, records } = await front({ routes: { 'dead.test': dead }, rateLimit: { limit: 1 }, foldRepeatedFailures: 5_000 });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await get(proxy.port, 'dead.test')).status);
    expect(statuses).toEqual([502, 429, 429, 429]);
    expect(records.filter((r) => r.code === 'RATE_LIMITED')).toHaveLength(3);
  });
});

describe('foldRepeatedFailures option', () => {
  it.each([
    ['zero', 0],
    ['a fraction', 1.5],
    ['a string', '1s'],
    ['true', true],
    ['too long for a timer', 2 ** 31],
  ])('rejects %s, naming the option', (_case, value) => {
    expect(() => createProxy({ routes: { 'a.test': 'http://127.0.0.1:1' }, foldRepeatedFailures: value } as unknown as ProxyOptions)).toThrow(
      /^honest-proxy: foldRepeatedFailures must be false or a whole number of milliseconds from 1 to 2147483647; got /,
    );
  });
});
