// The README quick start: `npm start`. An Express app on 127.0.0.1:8080 mounts
// honest-proxy at /preview in front of a bundled demo app on 127.0.0.1:3000,
// routed by `{port}-{id}.localhost` hosts. Port 3001 is a "stopped" app:
// routed, but nothing listens there.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createProxy, portHostRoutes } from '../../src/index.ts';

export interface DemoOptions {
  port: number;
  upstreamPort: number;
  /** Where the "stopped" app would be; nothing listens there. */
  stoppedPort: number;
  quiet?: boolean;
}

export interface Demo {
  port: number;
  upstreamPort: number;
  close(): Promise<void>;
}

function startDemoApp(port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<h1>demo app</h1><p>Served through honest-proxy.</p>\n');
    } else if (req.url === '/api/hello') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"hello":"world"}\n');
    } else {
      // An application 404: it must reach the client as exactly this.
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error": "not found"}\n');
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const upstream = await startDemoApp(options.upstreamPort);
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const apps = new Map([
    [upstreamPort, `http://127.0.0.1:${upstreamPort}`],
    [options.stoppedPort, `http://127.0.0.1:${options.stoppedPort}`],
  ]);

  const app = express();
  app.get('/', (_req, res) => {
    res.type('text/plain').send('honest-proxy demo: try the requests in README.md under /preview/\n');
  });
  app.use(
    '/preview',
    createProxy({
      routes: portHostRoutes({
        domain: 'localhost',
        resolve: (id, port) => (id === 'demo' ? apps.get(port) : undefined),
      }),
      ...(options.quiet && { logger: (await import('winston')).default.createLogger({ silent: true }) }),
    }),
  );
  const server = await new Promise<http.Server>((resolve) => {
    const listening = http.createServer(app).listen(options.port, '127.0.0.1', () => resolve(listening));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    upstreamPort,
    close: async () => {
      server.closeAllConnections();
      upstream.closeAllConnections();
      await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => upstream.close(r))]);
    },
  };
}

if (import.meta.main) {
  const port = Number(process.env.PORT ?? 8080);
  const upstreamPort = Number(process.env.UPSTREAM_PORT ?? 3000);
  const demo = await startDemo({ port, upstreamPort, stoppedPort: upstreamPort + 1 });
  const base = `http://127.0.0.1:${demo.port}/preview`;
  console.log(`honest-proxy demo: proxy on http://127.0.0.1:${demo.port}, demo app on 127.0.0.1:${demo.upstreamPort}
  curl -i -H 'Host: ${demo.upstreamPort}-demo.localhost' ${base}/api/hello      # 200 from the app
  curl -i -H 'Host: ${demo.upstreamPort}-demo.localhost' ${base}/missing        # the app's own 404, untouched
  curl -i -H 'Host: 9999-nobody.localhost' ${base}/                       # proxy 404: no route
  curl -i -H 'Host: ${demo.upstreamPort + 1}-demo.localhost' ${base}/              # proxy 502: app stopped
  or open http://${demo.upstreamPort}-demo.localhost:${demo.port}/preview/ in a browser. Ctrl-C stops.`);
  const stop = () => void demo.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
