import { createClient } from 'redis';
import { portHostRoutes, type CachedRoutes } from '../src/index.ts';
import { EXPRESS_VERSIONS } from './helpers/apps.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import { startRedis, type RedisServer } from './helpers/redis.ts';
import { get, sleep, startFront, startNamedUpstream, waitFor, type Front } from './helpers/route-lookup.ts';

type Client = ReturnType<typeof createClient>;

interface Instance {
  front: Front;
  routes: CachedRoutes;
  client: Client;
  records: LogRecord[];
  /** Sandbox ids resolve was called with, in order. */
  calls: string[];
}

const OUTAGE = /Redis unreachable/;
const BACK = /Redis reachable again/;

describe('route cache invalidation across instances (a real Redis)', () => {
  let redis: RedisServer;
  let redisPort: number;
  let alpha: Awaited<ReturnType<typeof startNamedUpstream>>;
  let beta: Awaited<ReturnType<typeof startNamedUpstream>>;
  // The platform's own record of where each sandbox runs, shared by every instance.
  const sandboxes = new Map<string, string>();
  const instances: Instance[] = [];
  // Every client made, connected or not: one left reconnecting would keep the test process alive.
  const clients: Client[] = [];
  let redisUp = false;

  /** One proxy instance, with its own cache and its own Redis client, on one of the Express majors. */
  async function startInstance(express: (typeof EXPRESS_VERSIONS)[number][1]): Promise<Instance> {
    const client: Client = createClient({ url: redis.url, socket: { reconnectStrategy: () => 100 } });
    client.on('error', () => {}); // the app's own client; the cache reports what matters to it
    clients.push(client);
    await client.connect();
    const { logger, records } = captureLogs('debug');
    const calls: string[] = [];
    const routes = portHostRoutes({
      domain: 'localhost',
      resolve: async (id) => {
        calls.push(id);
        return sandboxes.get(id);
      },
      cache: { ttl: 60_000, redis: client },
    });
    const front = await startFront(express, { routes, logger });
    const instance = { front, routes, client, records, calls };
    instances.push(instance);
    return instance;
  }

  const bodyOf = async (instance: Instance, host: string) => (await get(instance.front.port, host)).body;

  beforeAll(async () => {
    redis = await startRedis();
    redisUp = true;
    redisPort = Number(new URL(redis.url).port);
    alpha = await startNamedUpstream('alpha');
    beta = await startNamedUpstream('beta');
  });

  afterAll(async () => {
    for (const { front, routes } of instances) {
      await routes.close();
      await front.proxy.close({ timeout: 100 });
      await front.close();
    }
    for (const client of clients) if (client.isOpen) client.destroy();
    await Promise.all([alpha?.close(), beta?.close()]);
    await redis?.stop();
  });

  it('takes an invalidation on one instance to every other within a second, so a moved sandbox is not served stale; survives an outage; works again after it', async () => {
    const [one, two] = [await startInstance(EXPRESS_VERSIONS[0]![1]), await startInstance(EXPRESS_VERSIONS[1]![1])];
    // Both subscribed before anything is invalidated.
    await sleep(200);
    sandboxes.set('demo', alpha.url);
    for (const instance of [one, two]) expect(await bodyOf(instance, '3000-demo.localhost')).toBe('alpha /');

    // The sandbox moves. Each instance still holds where it was...
    sandboxes.set('demo', beta.url);
    expect(await bodyOf(two, '3000-demo.localhost')).toBe('alpha /');
    // ...until the platform invalidates it, on one instance only.
    const invalidatedAt = performance.now();
    one.routes.invalidate('demo');
    expect(await bodyOf(one, '3000-demo.localhost')).toBe('beta /');
    await waitFor(async () => (await bodyOf(two, '3000-demo.localhost')) === 'beta /', 1000, 'the other instance to re-resolve');
    expect(performance.now() - invalidatedAt).toBeLessThan(1000);
    expect(two.calls).toEqual(['demo', 'demo']);

    // Redis goes away: both keep serving, hits from their cache and misses from resolve.
    await redis.stop();
    redisUp = false;
    sandboxes.set('other', alpha.url);
    const until = performance.now() + 1500;
    let served = 0;
    while (performance.now() < until) {
      for (const instance of [one, two]) {
        expect(await bodyOf(instance, '3000-demo.localhost')).toBe('beta /');
        expect(await bodyOf(instance, `${served + 1}-other.localhost`)).toBe('alpha /');
      }
      served++;
      await sleep(50);
    }
    expect(served).toBeGreaterThan(5);
    // One record per instance for the whole outage, not one per request or per reconnect attempt.
    for (const instance of [one, two]) {
      const outage = instance.records.filter((record) => OUTAGE.test(record.message));
      expect(outage).toHaveLength(1);
      expect(outage[0]).toMatchObject({ level: 'warn', channel: 'honest-proxy:route-cache' });
    }

    // Redis is back: each instance says so once, and drops what it holds (invalidations sent meanwhile were lost).
    redis = await startRedis(redisPort);
    redisUp = true;
    for (const instance of [one, two]) await waitFor(() => instance.records.some((record) => BACK.test(record.message)), 5000, 'the subscription to come back');
    await waitFor(() => one.client.isReady, 5000, "the app's client to reconnect");
    const before = two.calls.length;
    expect(await bodyOf(two, '3000-demo.localhost')).toBe('beta /');
    expect(two.calls.length).toBe(before + 1);

    sandboxes.set('demo', alpha.url);
    one.routes.invalidate('demo');
    await waitFor(async () => (await bodyOf(two, '3000-demo.localhost')) === 'alpha /', 1000, 'the other instance to re-resolve after the outage');
    for (const instance of [one, two]) {
      expect(instance.records.filter((record) => OUTAGE.test(record.message))).toHaveLength(1);
      expect(instance.records.filter((record) => BACK.test(record.message))).toHaveLength(1);
    }
  }, 30_000);

  it('clear() on one instance empties every instance', async () => {
    if (!redisUp) {
      redis = await startRedis(redisPort);
      redisUp = true;
    }
    const [one, two] = [await startInstance(EXPRESS_VERSIONS[0]![1]), await startInstance(EXPRESS_VERSIONS[1]![1])];
    await sleep(200);
    sandboxes.set('c1', alpha.url);
    for (const instance of [one, two]) expect(await bodyOf(instance, '80-c1.localhost')).toBe('alpha /');
    sandboxes.set('c1', beta.url);
    one.routes.clear();
    await waitFor(async () => (await bodyOf(two, '80-c1.localhost')) === 'beta /', 1000, 'the other instance to re-resolve');
    expect(one.routes.stats().size).toBe(0);
  });
});
