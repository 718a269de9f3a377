import express from 'express';
import { RedisStore } from 'rate-limit-redis';
import { createClient } from 'redis';
import request from 'supertest';
import { PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { startRedis, type RedisServer } from './helpers/redis.ts';
import { startUpstream, type Upstream } from './helpers/servers.ts';

type Client = ReturnType<typeof createClient>;

/** The README recipe: one client per instance, failing fast (no offline queue) when Redis is down. */
async function connect(url: string): Promise<Client> {
  const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: () => 200 } });
  client.on('error', () => {}); // connection loss is reported through failed commands
  await client.connect();
  return client;
}

function redisStore(client: Client): RedisStore {
  return new RedisStore({ prefix: 'hp-test:', sendCommand: (...args: string[]) => client.sendCommand(args) });
}

describe('rate limit shared through Redis', () => {
  let redis: RedisServer;
  let upstream: Upstream;
  const clients: Client[] = [];
  const apps: ProxyApp[] = [];
  const { logger, records } = captureLogs('info');

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startUpstream((_req, res) => res.end('ok'));
  });
  afterAll(async () => {
    // After a failed beforeAll (no redis-server, say) only what started is stopped,
    // so the report shows that failure and not a TypeError from here.
    for (const client of clients) client.destroy();
    await Promise.all([...apps, upstream].filter(Boolean).map((s) => s.close()));
    await redis?.stop();
  });

  async function instance(extra: { onStoreError?: 'allow' | 'deny'; limit?: number } = {}): Promise<ProxyApp> {
    const client = await connect(redis.url);
    clients.push(client);
    const app = await startProxyApp(express, {
      routes: { 'a.localhost': upstream.url },
      rateLimit: { limit: extra.limit ?? 3, windowMs: 60_000, store: redisStore(client), ...(extra.onStoreError && { onStoreError: extra.onStoreError }) },
      logger,
    });
    apps.push(app);
    return app;
  }

  it('two proxy instances enforce one limit together', async () => {
    const [first, second] = [await instance(), await instance()];
    const statuses: number[] = [];
    for (const app of [first, second, first, second, first]) {
      statuses.push((await request(app.server).get(`${PREFIX}/`).set('Host', 'a.localhost').set('X-Forwarded-For', '1.2.3.4')).status);
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(upstream.seen).toHaveLength(3);
  });

  it('when Redis goes down: lets requests through and logs at error by default; 503 when told to fail closed', async () => {
    const open = await instance({ limit: 1000 });
    const closed = await instance({ limit: 1000, onStoreError: 'deny' });
    expect((await request(open.server).get(`${PREFIX}/`).set('Host', 'a.localhost')).status).toBe(200);
    expect((await request(closed.server).get(`${PREFIX}/`).set('Host', 'a.localhost')).status).toBe(200);

    await redis.stop();
    records.length = 0;
    upstream.seen.length = 0;

    const allowed = await request(open.server).get(`${PREFIX}/`).set('Host', 'a.localhost');
    expect(allowed.status).toBe(200);
    expect(allowed.text).toBe('ok');
    expect(upstream.seen).toHaveLength(1);
    expect(records.filter((r) => r.level === 'error')).toHaveLength(1);

    records.length = 0;
    const denied = await request(closed.server).get(`${PREFIX}/`).set('Host', 'a.localhost');
    expect(denied.status).toBe(503);
    expect(denied.text).toBe('Service Unavailable');
    expect(denied.headers['proxy-status']).toBe('proxy; error=proxy_internal_error');
    expect(upstream.seen).toHaveLength(1);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 'error', status: 503, code: 'GUARD_UNAVAILABLE' });
  });
});
