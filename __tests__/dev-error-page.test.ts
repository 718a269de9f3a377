import http from 'node:http';
import { createProxy } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { rawRequest, type RawResponse } from './helpers/raw-http.ts';
import { closedPort, listen, startUpstream, type Running, type Upstream } from './helpers/servers.ts';

// With `onError: 'next'` and no error handler of the app's own, Express's
// default handler (finalhandler) renders the page: `err.stack` outside
// production, the status text in production. Either way it must show the
// status and nothing of what only the logs may see.

const ENVS = ['development', 'production'] as const;
type Env = (typeof ENVS)[number];

/** What finalhandler put inside its `<pre>`, unescaped enough to compare. */
function pageText(res: RawResponse): string {
  const match = /<pre>([\s\S]*)<\/pre>/.exec(res.body);
  if (!match) throw new Error(`not finalhandler's page: ${res.raw}`);
  return match[1]!.replaceAll('<br>', '\n').replaceAll('&nbsp;', ' ');
}

describe.each(EXPRESS_VERSIONS)("Express's default error page with onError 'next' (%s)", (_name, express) => {
  let upstream: Upstream;
  let refusedPort: number;
  const apps = {} as Record<Env, Running>;
  const { logger, records } = captureLogs('info');
  // Express logs what reaches its default handler with console.error outside
  // env 'test': that is the server's stderr, not the page; kept out of the run's output.
  const consoleError = console.error;

  beforeAll(async () => {
    console.error = () => {};
    upstream = await startUpstream((_req, res) => res.end('fine'));
    refusedPort = await closedPort();
    for (const env of ENVS) {
      const app = express();
      // What NODE_ENV sets when the app is created; set here so jest's NODE_ENV=test does not decide.
      app.set('env', env);
      app.use(
        PREFIX,
        createProxy({
          routes: { 'refused.localhost': `http://127.0.0.1:${refusedPort}`, 'ok.localhost': upstream.url },
          logger,
          onError: 'next',
          bodyLimit: 4096,
        }),
      );
      apps[env] = await listen(http.createServer(app));
    }
  });

  afterAll(async () => {
    console.error = consoleError;
    await Promise.all([upstream.close(), ...ENVS.map((env) => apps[env].close())]);
  });

  beforeEach(() => {
    records.length = 0;
  });

  it('502 for a refused upstream: the page shows Bad Gateway in development and production, never the address or ECONNREFUSED', async () => {
    for (const env of ENVS) {
      const res = await rawRequest(apps[env].port, `GET ${PREFIX}/x HTTP/1.1\r\nHost: refused.localhost\r\nConnection: close\r\n\r\n`);
      expect(res.status).toBe(502);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['proxy-status']).toBe('proxy; error=connection_refused');
      // Development prints err.stack: the class name and the public text, no frames.
      expect(pageText(res)).toBe(env === 'production' ? 'Bad Gateway' : 'UpstreamUnreachableError: Bad Gateway');
      for (const secret of ['127.0.0.1', String(refusedPort), 'ECONNREFUSED', 'ECONN', 'upstream request failed', ' at ', 'node:']) {
        expect(res.body).not.toContain(secret);
      }
    }
    // The logs lose nothing: the internal sentence, the upstream and the cause's code.
    expect(records).toHaveLength(2);
    for (const record of records) {
      expect(record).toMatchObject({
        level: 'warn',
        message: 'upstream request failed: ECONNREFUSED',
        status: 502,
        code: 'UPSTREAM_UNREACHABLE',
        upstream: `http://127.0.0.1:${refusedPort}`,
        cause: { code: 'ECONNREFUSED', message: `connect ECONNREFUSED 127.0.0.1:${refusedPort}` },
      });
    }
  });

  it('413 for a declared body over the limit: the page shows Payload Too Large in development and production, never the sizes', async () => {
    for (const env of ENVS) {
      // The body is sent: finalhandler reads a request to its end before it writes the page.
      const res = await rawRequest(
        apps[env].port,
        `POST ${PREFIX}/upload HTTP/1.1\r\nHost: ok.localhost\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n${'x'.repeat(5000)}`,
      );
      expect(res.status).toBe(413);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers.connection).toBe('close');
      expect(pageText(res)).toBe(env === 'production' ? 'Payload Too Large' : 'PayloadTooLargeError: Payload Too Large');
      for (const secret of ['5000', '4096', 'declared body', 'limit', 'bytes', ' at ']) {
        expect(res.body).not.toContain(secret);
      }
    }
    expect(upstream.seen).toEqual([]);
    expect(records).toHaveLength(2);
    for (const record of records) {
      expect(record).toMatchObject({
        level: 'info',
        message: 'declared body of 5000 bytes over the limit of 4096',
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
      });
    }
  });
});
