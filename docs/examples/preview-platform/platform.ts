// A preview platform in one function: auth in front, honest-proxy behind it,
// routing `{port}-{id}.{domain}` hosts to sandbox apps the platform does not
// trust. Everything here is a choice a platform makes; the other files hold
// one part each (auth.ts, sandboxes.ts, idle-reaper.ts, preview-hosts.ts).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Registry } from 'prom-client';
import { createProxy, portHostRoutes, UpstreamUnavailableError, type ProxyOptions } from '../../../src/index.ts';
import { requireUser, TOKEN_COOKIE, TOKEN_QUERY, type AuthedRequest } from './auth.ts';
import { startIdleReaper } from './idle-reaper.ts';
import { isPreviewHost, sandboxIdOf } from './preview-hosts.ts';
import { SandboxStore } from './sandboxes.ts';

export interface PreviewPlatformOptions {
  /** Where the platform listens, on 127.0.0.1; 0 for any free port. Default 8080. */
  port?: number;
  /** Previews are `{appPort}-{id}.{domain}`. Default `preview.localhost` (browsers resolve `*.localhost` to loopback). */
  domain?: string;
  /** Platform token -> user id: stands in for the platform's real token check. */
  tokens: Readonly<Record<string, string>>;
  /** Sandboxes created, running, at start. */
  sandboxes?: readonly string[];
  /** The port a sandbox's app serves inside the sandbox: `{port}` in the host. Default 3000. */
  appPort?: number;
  /** ms each sandbox lookup takes. Default 20. */
  storeLatencyMs?: number;
  /** ms a woken sandbox takes until its app listens. Default 1000. */
  bootMs?: number;
  /** ms a request to a booting sandbox waits for its app to listen. Default 10000. */
  startupGraceMs?: number;
  /** The route cache. Default `{ ttl: 60000, notFoundTtl: 1000, max: 10000 }`. */
  cache?: { ttl?: number; notFoundTtl?: number; max?: number };
  /** Requests per sandbox per window. Default 600 a minute. */
  rateLimit?: { limit: number; windowMs: number };
  /** ms between two activity reports for one sandbox. Default 30000. */
  activityIntervalMs?: number;
  /** ms without activity after which a sandbox is stopped. Default 15 minutes. */
  idleAfterMs?: number;
  /** ms between two sweeps for idle sandboxes. Default 60000. */
  idleCheckMs?: number;
  /** The proxy's logger (`false`: none). Default: JSON lines to stderr. */
  logger?: ProxyOptions['logger'];
}

export interface PreviewPlatform {
  port: number;
  domain: string;
  sandboxes: SandboxStore;
  /** The metrics served at /metrics. */
  registry: Registry;
  /** The Host a client uses for sandbox `id`'s app: `3000-alpha.preview.localhost`. */
  previewHost(id: string): string;
  /** Stops taking connections, drains the proxy, then stops the sandboxes: nothing is left open. */
  close(): Promise<void>;
}

export async function startPreviewPlatform(options: PreviewPlatformOptions): Promise<PreviewPlatform> {
  const domain = options.domain ?? 'preview.localhost';
  const appPort = options.appPort ?? 3000;
  const bootMs = options.bootMs ?? 1000;
  const startupGrace = options.startupGraceMs ?? 10_000;
  const sandboxes = new SandboxStore({ latencyMs: options.storeLatencyMs ?? 20, bootMs });
  for (const id of options.sandboxes ?? []) await sandboxes.create(id);

  const routes = portHostRoutes({
    domain,
    resolve: async (id, port, _req: AuthedRequest, { signal }) => {
      if (port !== appPort) return undefined; // 404, without asking the store
      const sandbox = await sandboxes.find(id, signal);
      if (!sandbox) return undefined; // 404
      if (sandbox.state === 'stopped') {
        // Start it, and tell the client when to come back; by then it is booting or up.
        sandboxes.wake(id);
        throw new UpstreamUnavailableError(`sandbox ${id} is stopped; waking it`, { retryAfterSeconds: Math.max(1, bootMs / 1000) });
      }
      // Its app is not listening yet: the proxy retries the connect for this long instead of answering 502.
      return sandbox.state === 'booting' ? { target: sandbox.origin, startupGrace } : sandbox.origin;
    },
    // Cached per host. The cache is shared by every user, so what resolve
    // answers must not depend on who asks: per-user access belongs in auth.
    cache: { ttl: 60_000, notFoundTtl: 1000, max: 10_000, ...options.cache },
  });
  // A stopped, woken or moved sandbox: its cached route is stale from now on.
  const forget = (id: string) => routes.invalidate(id);
  sandboxes.on('changed', forget);

  const registry = new Registry();
  const proxy = createProxy<AuthedRequest>({
    routes,
    // The platform's credentials, wherever auth.ts read them from, never reach a sandbox...
    requestHeaders: {
      remove: ['authorization'],
      // ...and who the user is comes from the platform, never from the client.
      set: { 'x-preview-user': (req) => req.user.id },
    },
    removeCookies: [TOKEN_COOKIE],
    removeQuery: [TOKEN_QUERY],
    // A sandbox's Set-Cookie for the whole preview domain stays a cookie of its own host.
    cookieDomain: { '*': '' },
    // Per sandbox, not per client: one busy sandbox cannot starve the others,
    // and every user of a shared preview counts against it. Runs before the
    // route lookup, so the id comes from the host.
    rateLimit: {
      limit: 600,
      windowMs: 60_000,
      ...options.rateLimit,
      keyGenerator: (req) => `sandbox:${sandboxIdOf(req.headers.host, domain) ?? 'none'}`,
    },
    onActivity: (id) => sandboxes.touch(id),
    activityInterval: options.activityIntervalMs ?? 30_000,
    metrics: { registry, name: 'preview' },
    ...(options.logger !== undefined && { logger: options.logger }),
  });
  const reaper = startIdleReaper(sandboxes, { idleAfterMs: options.idleAfterMs ?? 15 * 60_000, everyMs: options.idleCheckMs ?? 60_000 });

  const previews = express.Router();
  previews.use(requireUser((token) => (Object.hasOwn(options.tokens, token) ? { id: options.tokens[token]! } : undefined)));
  previews.use(proxy);

  const app = express();
  // Preview hosts are the sandboxes'; every other host is the platform's own.
  app.use((req, res, next) => (isPreviewHost(req.headers.host, domain) ? previews(req, res, next) : next()));
  // In production, serve this on an internal port or behind auth.
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  app.get('/', (_req, res) => {
    res.type('text/plain').send(`preview platform: sandboxes at {port}-{id}.${domain}, metrics at /metrics\n`);
  });

  const server = http.createServer(app);
  // Upgrades take the same way as requests: through the auth, then the proxy.
  server.on('upgrade', proxy.upgradeThrough(app, '/'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, '127.0.0.1', () => resolve());
  });

  return {
    port: (server.address() as AddressInfo).port,
    domain,
    sandboxes,
    registry,
    previewHost: (id) => `${appPort}-${id}.${domain}`,
    async close() {
      reaper.stop();
      const closed = new Promise((resolve) => server.close(resolve)); // no new connections
      await proxy.close({ timeout: 5000 }); // in flight may finish; WebSockets get 1001
      await routes.close();
      server.closeAllConnections(); // clients' idle keep-alive connections
      await closed;
      sandboxes.off('changed', forget);
      await sandboxes.close();
    },
  };
}
