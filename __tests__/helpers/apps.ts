import http, { type Server } from 'node:http';
import express5 from 'express';
import express4 from 'express4';
import { createProxy, type HonestProxy, type ProxyOptions } from '../../src/index.ts';
import { listen, type Running } from './servers.ts';

type ExpressFactory = typeof express5;

/** Both supported Express majors; integration suites run once per entry. */
export const EXPRESS_VERSIONS: Array<[string, ExpressFactory]> = [
  ['express 5', express5],
  ['express 4', express4 as unknown as ExpressFactory],
];

export const PREFIX = '/preview';

export interface ProxyApp extends Running {
  server: Server;
}

/** An Express app with the proxy mounted at PREFIX, listening on 127.0.0.1:0. */
export async function startProxyApp(express: ExpressFactory, options: ProxyOptions, mount = PREFIX): Promise<ProxyApp> {
  const app = express();
  app.use(mount, createProxy(options));
  const server = http.createServer(app);
  const running = await listen(server);
  return Object.assign(running, { server });
}

export interface ProxyFront extends Running {
  proxy: HonestProxy;
}

/**
 * The proxy in front of a test's upstreams, on 127.0.0.1:0: the bare handler,
 * or mounted at PREFIX in an Express app when `express` is given; upgrades go
 * to `proxy.upgrade`. close() closes the proxy (0.1 s grace), then the server.
 */
export async function startProxyFront(options: ProxyOptions, express?: ExpressFactory): Promise<ProxyFront> {
  const proxy = createProxy(options);
  let handler: http.RequestListener = (req, res) => proxy(req, res);
  if (express) {
    const app = express();
    app.use(PREFIX, proxy);
    handler = app;
  }
  const server = http.createServer(handler);
  server.on('upgrade', proxy.upgrade);
  const running = await listen(server);
  return {
    ...running,
    proxy,
    close: async () => {
      await proxy.close({ timeout: 100 });
      await running.close();
    },
  };
}
