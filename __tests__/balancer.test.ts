import http from 'node:http';
import net from 'node:net';
import { beginExchange } from '../src/exchange.ts';
import { ROUND_ROBIN } from '../src/upstream/balance/options.ts';
import { createBalancer } from '../src/upstream/balancer.ts';
import type { ResolvedRoute } from '../src/routes/target.ts';

const route = (...origins: string[]): ResolvedRoute => ({ targets: origins.map((origin) => new URL(origin)) });
// Round robin reads nothing of the request: an unsent one stands in for it.
const req = new http.IncomingMessage(new net.Socket());
const exchange = beginExchange(req, undefined, undefined);

// The balancer remembers routes (for round robin) and upstreams (for health):
// a route function that names new upstreams per request must not grow it forever.
describe('the balancer stays bounded', () => {
  it('forgets round-robin turns once it has seen 10,000 routes', () => {
    const balancer = createBalancer({ maxFails: 1, failTimeout: 10_000 }, ROUND_ROBIN, () => {});
    const watched = route('http://a.test', 'http://b.test');
    // Its next turn would be b.test.
    expect(balancer.pick(watched, req, exchange).host).toBe('a.test');
    for (let i = 0; i < 10_000; i++) balancer.pick(route(`http://x${i}.test`, `http://y${i}.test`), req, exchange);
    // Its turn was forgotten with the rest: it starts again at the first upstream.
    expect(balancer.pick(watched, req, exchange).host).toBe('a.test');
  });

  it('forgets failure counts of upstreams not taken out once it tracks 10,000', () => {
    const ejected: string[] = [];
    const balancer = createBalancer({ maxFails: 2, failTimeout: 10_000 }, ROUND_ROBIN, (upstream) => ejected.push(upstream));
    const watched = route('http://a.test', 'http://b.test');
    balancer.failed(watched, watched.targets[0]!);
    for (let i = 0; i < 10_000; i++) {
      const other = route(`http://x${i}.test`, `http://y${i}.test`);
      balancer.failed(other, other.targets[0]!);
    }
    balancer.failed(watched, watched.targets[0]!);
    // One failure remembered, one after the map was emptied of counts: not two in a row.
    expect(ejected).toEqual([]);
    balancer.failed(watched, watched.targets[0]!);
    expect(ejected).toEqual(['http://a.test']);
  });
});
