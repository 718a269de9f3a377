import { BadRequestError } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { openRaw, type RawConnection } from './helpers/raw-client.ts';
import { startUpstream, type Upstream } from './helpers/servers.ts';

// Requests pipelined on one connection, written in one go on a raw socket:
// each must be forwarded and answered in the order it arrived, and only those
// that arrived after the connection's last request are dropped (RFC 9112 9.3.2, 9.6).

const HOST = 'app.localhost';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function get(path: string, extra = ''): string {
  return `GET ${PREFIX}${path} HTTP/1.1\r\nHost: ${HOST}\r\n${extra}\r\n`;
}

function post(path: string, body: string, extra = ''): string {
  return `POST ${PREFIX}${path} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

const CLOSE = 'Connection: close\r\n';

describe.each(EXPRESS_VERSIONS)('pipelined requests (%s)', (_name, express) => {
  let upstream: Upstream;
  let proxy: ProxyApp;
  /** Request-targets in the order the upstream received their heads. */
  const arrived: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      arrived.push(req.url!);
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        // The first request answers last: a pipeline must still come back in order.
        setTimeout(() => res.end(`${req.url}${body ? ` ${body}` : ''}`), req.url === '/1' ? 60 : 0);
      });
    });
    proxy = await startProxyApp(express, { routes: { [HOST]: upstream.url } });
  });

  afterAll(async () => {
    await proxy.close();
    await upstream.close();
  });

  beforeEach(() => {
    arrived.length = 0;
  });

  async function pipeline(bytes: string, expected: number): Promise<RawConnection> {
    const connection = await openRaw(proxy.port);
    await connection.write(bytes);
    const all = await connection.waitForResponses(expected, 3000);
    expect({ all, received: connection.received().toString('latin1') }).toMatchObject({ all: true });
    return connection;
  }

  it.each([2, 3, 10])('%i GETs, the last with `Connection: close`: all forwarded, answered in order, then the socket closes', async (count) => {
    const paths = Array.from({ length: count }, (_, i) => `/${i + 1}`);
    const bytes = paths.map((path, i) => get(path, i === count - 1 ? CLOSE : '')).join('');
    const connection = await pipeline(bytes, count);
    try {
      const responses = connection.responses();
      expect(responses.map((r) => r.status)).toEqual(paths.map(() => 200));
      expect(responses.map((r) => r.body.toString())).toEqual(paths);
      expect(responses.at(-1)!.headers.connection).toBe('close');
      expect([...arrived].sort()).toEqual([...paths].sort());
      expect(await connection.waitForClose(1000)).toBe(true);
    } finally {
      connection.destroy();
    }
  });

  it.each([2, 3, 10])('%i GETs kept alive: all answered in order, the connection stays open', async (count) => {
    const paths = Array.from({ length: count }, (_, i) => `/${i + 1}`);
    const connection = await pipeline(paths.map((path) => get(path)).join(''), count);
    try {
      expect(connection.responses().map((r) => r.body.toString())).toEqual(paths);
      await sleep(50);
      expect(connection.closedByServer()).toBe(false);
    } finally {
      connection.destroy();
    }
  });

  it('POSTs with bodies, the last with `Connection: close`: each body reaches its own request', async () => {
    const bytes = post('/1', 'one') + get('/2') + post('/3', 'three', CLOSE);
    const connection = await pipeline(bytes, 3);
    try {
      expect(connection.responses().map((r) => r.body.toString())).toEqual(['/1 one', '/2', '/3 three']);
      expect(await connection.waitForClose(1000)).toBe(true);
    } finally {
      connection.destroy();
    }
  });

  it('behind a refused one (404, kept alive): the refusal and every request after it are answered in order', async () => {
    const bytes = get('/1') + `GET ${PREFIX}/x HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n` + get('/3', CLOSE);
    const connection = await pipeline(bytes, 3);
    try {
      const responses = connection.responses();
      expect(responses.map((r) => r.status)).toEqual([200, 404, 200]);
      expect(responses[1]!.headers['proxy-status']).toBe('proxy; error=destination_not_found');
      expect([responses[0]!.body.toString(), responses[2]!.body.toString()]).toEqual(['/1', '/3']);
      expect([...arrived].sort()).toEqual(['/1', '/3']);
    } finally {
      connection.destroy();
    }
  });

  it('the first request marked last stays the last, whichever later one is marked after it', async () => {
    // Admission runs pipelined requests concurrently, and responses leave in
    // order. /slow holds the connection open (its upstream answers at 600 ms);
    // behind it /a is refused 400 (two Host lines, `Connection: close`) at once,
    // /held waits 300 ms for its route, and /b's route refuses it the same way
    // at 100 ms. /b marked last after /a must not move the line past /held:
    // /held arrived after /a, so it is never forwarded.
    const seen: string[] = [];
    const slow = await startUpstream((req, res) => {
      seen.push(req.url!);
      setTimeout(() => res.end('slow'), 600);
    });
    const refusing = await startProxyApp(express, {
      routes: async (req) => {
        const host = String(req.headers.host);
        if (host === 'held.localhost') await sleep(300);
        if (host === 'b.localhost') {
          await sleep(100);
          throw new BadRequestError('refused by the route');
        }
        return slow.url;
      },
    });
    const connection = await openRaw(refusing.port);
    try {
      await connection.write(
        `GET ${PREFIX}/slow HTTP/1.1\r\nHost: slow.localhost\r\n\r\n` +
          `GET ${PREFIX}/a HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n` +
          `GET ${PREFIX}/held HTTP/1.1\r\nHost: held.localhost\r\n\r\n` +
          `GET ${PREFIX}/b HTTP/1.1\r\nHost: b.localhost\r\n\r\n`,
      );
      expect(await connection.waitForResponses(2, 2000)).toBe(true);
      expect(connection.responses().map((r) => r.status)).toEqual([200, 400]);
      expect(await connection.waitForClose(1000)).toBe(true);
      expect(seen).toEqual(['/slow']);
    } finally {
      connection.destroy();
      await refusing.close();
      await slow.close();
    }
  });

  it('`Connection: close` in the middle: nothing after it reaches the upstream', async () => {
    // Node's parser itself refuses bytes after a `close` request (llhttp's
    // HPE_CLOSED_CONNECTION): its own 400 ends the connection, taking the
    // requests before it along. What the proxy must hold: nothing after the close is forwarded.
    const connection = await openRaw(proxy.port);
    try {
      await connection.write(get('/1') + get('/2', CLOSE) + get('/after-1') + post('/after-2', 'x'));
      expect(await connection.waitForClose(1000)).toBe(true);
      await sleep(100);
      expect(arrived.filter((path) => path.startsWith('/after'))).toEqual([]);
    } finally {
      connection.destroy();
    }
  });
});
