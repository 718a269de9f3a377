import http, { type IncomingMessage, type Server } from 'node:http';
import { createProxy, type HonestProxy, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { openRaw, sendRaw, type ParsedResponse, type RawConnection } from './helpers/raw-client.ts';
import { closedPort, listen, startUpstream, type Running, type Upstream } from './helpers/servers.ts';

// Every client here is a raw socket writing exact bytes: supertest and
// node:http would normalise the very things a hostile client varies.

const HOST = 'app.localhost';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// A request that would reach the upstream through the proxy if a body were
// ever read as a second request on the client's connection.
const SMUGGLED_VIA_PROXY = `GET ${PREFIX}/admin HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An upstream that records every request as it arrives (even one never finished) and answers with its url. */
interface RecordingUpstream extends Upstream {
  /** Request-targets in order of arrival, before their bodies are read. */
  arrived: string[];
}

async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const arrived: string[] = [];
  const upstream = await startUpstream((req, res) => {
    arrived.push(req.url!);
    // startUpstream's own 'end' listener (which fills `seen`) runs first.
    req.on('end', () => {
      const answer = () => {
        const headers: Record<string, string> = { 'content-type': 'text/plain' };
        // As apps do: the request id comes back on the response.
        if (typeof req.headers['x-request-id'] === 'string') headers['x-request-id'] = req.headers['x-request-id'];
        res.writeHead(200, headers);
        res.end(req.url);
      };
      if (req.url!.startsWith('/slow')) setTimeout(answer, 50);
      else answer();
    });
  });
  return Object.assign(upstream, { arrived });
}

/** Statuses of the parsed responses, for messages that show the whole sequence. */
function statuses(responses: ParsedResponse[]): number[] {
  return responses.map((r) => r.status);
}

/** The wire bytes, for a failure message that shows what actually came back. */
function wire(connection: RawConnection): string {
  return JSON.stringify(connection.received().toString('latin1'));
}

describe.each(EXPRESS_VERSIONS)('hostile clients (%s)', (_name, express) => {
  let upstream: RecordingUpstream;
  let downPort: number;
  let proxy: ProxyApp;
  let limit100: ProxyApp;
  let limit1000: ProxyApp;
  const { logger, records } = captureLogs();

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    downPort = await closedPort();
    proxy = await startProxyApp(express, {
      routes: { [HOST]: upstream.url, 'down.localhost': `http://127.0.0.1:${downPort}` },
      logger,
    });
    limit100 = await startProxyApp(express, { routes: { [HOST]: upstream.url }, bodyLimit: 100, logger });
    limit1000 = await startProxyApp(express, { routes: { [HOST]: upstream.url }, bodyLimit: 1000, logger });
  });

  afterAll(async () => {
    await Promise.all([proxy.close(), limit100.close(), limit1000.close()]);
    await upstream.close();
  });

  beforeEach(() => {
    upstream.seen.length = 0;
    upstream.arrived.length = 0;
    records.length = 0;
  });

  /** Nothing reached the upstream, even after a moment for anything in flight to land. */
  async function expectNothingUpstream(): Promise<void> {
    await sleep(50);
    expect(upstream.arrived).toEqual([]);
    expect(upstream.seen).toEqual([]);
  }

  /** Writes one request, waits for its response and then a little longer for anything more. */
  async function exchange(port: number, bytes: string | Buffer, expected = 1): Promise<RawConnection> {
    const connection = await openRaw(port);
    await connection.write(bytes);
    await connection.waitForResponses(expected, 1000);
    await sleep(100);
    return connection;
  }

  describe('request smuggling via Connection', () => {
    it.each(['GET', 'POST'])("%s: `Connection: content-length` does not unframe a body that is itself a request", async (method) => {
      const body = 'GET /admin HTTP/1.1\r\nHost: other.localhost\r\n\r\n';
      const connection = await exchange(
        proxy.port,
        `${method} ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: content-length\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      try {
        const responses = connection.responses();
        expect(statuses(responses)).toEqual([200]);
        expect(responses[0]!.body.toString()).toBe('/x');
        expect(upstream.arrived).toEqual(['/x']);
        expect(upstream.seen).toHaveLength(1);
        const seen = upstream.seen[0]!;
        expect(seen.method).toBe(method);
        expect(seen.url).toBe('/x');
        expect(seen.headers['content-length']).toBe(String(body.length));
        expect(seen.headers['transfer-encoding']).toBeUndefined();
        expect(seen.body.equals(Buffer.from(body, 'latin1'))).toBe(true);
        expect(upstream.arrived).not.toContain('/admin');
      } finally {
        connection.destroy();
      }
    });

    it('`Connection: transfer-encoding` does not unframe a chunked body', async () => {
      const part1 = 'hello ';
      const part2 = SMUGGLED_VIA_PROXY;
      const connection = await openRaw(proxy.port);
      try {
        await connection.write(
          `POST ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n` +
            `${part1.length.toString(16)}\r\n${part1}\r\n`,
        );
        await sleep(20);
        await connection.write(`${part2.length.toString(16)}\r\n${part2}\r\n0\r\n\r\n`);
        await connection.waitForResponses(1, 1000);
        await sleep(100);
        expect(statuses(connection.responses())).toEqual([200]);
        expect(upstream.arrived).toEqual(['/x']);
        expect(upstream.seen).toHaveLength(1);
        const seen = upstream.seen[0]!;
        expect(seen.headers['transfer-encoding']).toBe('chunked');
        expect(seen.headers['content-length']).toBeUndefined();
        expect(seen.body.toString('latin1')).toBe(part1 + part2);
      } finally {
        connection.destroy();
      }
    });

    it('`Connection: host` does not remove the Host the upstream routes on', async () => {
      const connection = await exchange(proxy.port, `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: host\r\n\r\n`);
      try {
        expect(statuses(connection.responses())).toEqual([200]);
        expect(upstream.seen).toHaveLength(1);
        expect(upstream.seen[0]!.headers.host).toBe(HOST);
      } finally {
        connection.destroy();
      }
    });

    it('`Connection: x-request-id` does not remove the request id, upstream or on the response', async () => {
      const routed = await exchange(
        proxy.port,
        `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: x-request-id\r\nX-Request-ID: abc-123\r\n\r\n`,
      );
      try {
        const responses = routed.responses();
        expect(statuses(responses)).toEqual([200]);
        expect(upstream.seen).toHaveLength(1);
        expect(upstream.seen[0]!.headers['x-request-id']).toBe('abc-123');
        // Passed through from the app, which echoes what it was given.
        expect(responses[0]!.headers['x-request-id']).toBe('abc-123');
      } finally {
        routed.destroy();
      }
      // And on a response the proxy writes itself.
      const refused = await exchange(
        proxy.port,
        `GET ${PREFIX}/x HTTP/1.1\r\nHost: nobody.localhost\r\nConnection: x-request-id\r\nX-Request-ID: abc-123\r\n\r\n`,
      );
      try {
        const responses = refused.responses();
        expect(statuses(responses)).toEqual([404]);
        expect(responses[0]!.headers['proxy-status']).toBe('proxy; error=destination_not_found');
        expect(responses[0]!.headers['x-request-id']).toBe('abc-123');
      } finally {
        refused.destroy();
      }
    });

    it('keeps hop-by-hop fields and those Connection lists on the client side', async () => {
      const connection = await exchange(
        proxy.port,
        `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n` +
          'Proxy-Authorization: Basic x\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n',
      );
      try {
        expect(statuses(connection.responses())).toEqual([200]);
        expect(upstream.seen).toHaveLength(1);
        const headers = upstream.seen[0]!.headers;
        expect(headers['x-secret']).toBeUndefined();
        expect(headers['keep-alive']).toBeUndefined();
        expect(headers['proxy-authorization']).toBeUndefined();
        expect(headers['proxy-connection']).toBeUndefined();
        // The proxy's own value for its pooled connection, nothing of the client's.
        expect(headers.connection).toBe('keep-alive');
        expect(headers['x-kept']).toBe('yes');
      } finally {
        connection.destroy();
      }
    });

    /** An app whose first middleware snapshots req.headers and compares them once the response is finished. */
    async function startSnapshotApp(): Promise<{ running: Running; server: Server; checks: Array<{ before: string; after: string; requestId: unknown }> }> {
      const checks: Array<{ before: string; after: string; requestId: unknown }> = [];
      const app = express();
      app.use((req, res, next) => {
        const before = JSON.stringify(req.headers);
        res.on('finish', () => checks.push({ before, after: JSON.stringify(req.headers), requestId: req.headers['x-request-id'] }));
        next();
      });
      app.use(PREFIX, createProxy({ routes: { [HOST]: upstream.url }, logger }));
      const server = http.createServer(app);
      return { running: await listen(server), server, checks };
    }

    it('never mutates req.headers, and a replaced request id goes upstream only', async () => {
      const { running, checks } = await startSnapshotApp();
      const insaneId = `${'a'.repeat(150)} ${'b'.repeat(149)}`;
      expect(insaneId).toHaveLength(300);
      try {
        const connection = await exchange(
          running.port,
          `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n` +
            `TE: gzip\r\nX-Request-ID: ${insaneId}\r\n\r\n`,
        );
        connection.destroy();
        expect(statuses(connection.responses())).toEqual([200]);
        expect(upstream.seen).toHaveLength(1);
        const seen = upstream.seen[0]!.headers;
        expect(seen['x-request-id']).toMatch(UUID);
        expect(seen['x-secret']).toBeUndefined();
        expect(seen['keep-alive']).toBeUndefined();
        expect(seen.te).toBeUndefined();
        expect(checks).toHaveLength(1);
        expect(checks[0]!.after).toBe(checks[0]!.before);
        expect(checks[0]!.requestId).toBe(insaneId);
        expect(JSON.parse(checks[0]!.after)).toMatchObject({ connection: 'close, x-secret', 'x-secret': '1', 'keep-alive': 'timeout=5', te: 'gzip' });
      } finally {
        await running.close();
      }
    });

    it.each(['DELETE', 'OPTIONS'])('never mutates req.headers of a bodyless %s', async (method) => {
      const { running, checks } = await startSnapshotApp();
      try {
        const connection = await exchange(running.port, `${method} ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
        connection.destroy();
        expect(statuses(connection.responses())).toEqual([200]);
        expect(upstream.seen).toHaveLength(1);
        expect(checks).toHaveLength(1);
        expect(checks[0]!.after).toBe(checks[0]!.before);
      } finally {
        await running.close();
      }
    });

    it('`Connection: content-length` does not bypass the body limit', async () => {
      const body = SMUGGLED_VIA_PROXY.padEnd(1000, 'x');
      const connection = await exchange(
        limit100.port,
        `POST ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: content-length\r\nContent-Length: 1000\r\n\r\n${body}`,
      );
      try {
        const responses = connection.responses();
        expect(statuses(responses)).toEqual([413]);
        expect(responses[0]!.headers.connection).toBe('close');
        expect(responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
        expect(connection.closedByServer()).toBe(true);
        await expectNothingUpstream();
      } finally {
        connection.destroy();
      }
    });
  });

  describe('ambiguous framing is refused with 400 before routing', () => {
    const post = (fields: string, body: string) => `POST ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\n${fields}\r\n${body}`;
    const chunkedThenSmuggled = `0\r\n\r\n${SMUGGLED_VIA_PROXY}`;
    const helloThenSmuggled = `hello${SMUGGLED_VIA_PROXY}`;
    // Who refuses: Node 24's parser (a bare 400 of its own, before any handler
    // runs), or the proxy's check in src/request/validate.ts, for what the
    // parser lets through (a 400 with Proxy-Status, logged). A `node` case that
    // starts failing means the parser let it through: the proxy's check must
    // then cover it.
    const cases: Array<[string, 'node' | 'proxy', string]> = [
      ['Content-Length with Transfer-Encoding', 'node', post(`Content-Length: ${chunkedThenSmuggled.length}\r\nTransfer-Encoding: chunked\r\n`, chunkedThenSmuggled)],
      ['two Content-Length lines, same value', 'node', post('Content-Length: 5\r\nContent-Length: 5\r\n', helloThenSmuggled)],
      ['two Content-Length lines, different values', 'node', post(`Content-Length: 5\r\nContent-Length: ${helloThenSmuggled.length}\r\n`, helloThenSmuggled)],
      ['Content-Length: 5, 5', 'node', post('Content-Length: 5, 5\r\n', helloThenSmuggled)],
      ['Transfer-Encoding: chunked, gzip', 'node', post('Transfer-Encoding: chunked, gzip\r\n', chunkedThenSmuggled)],
      ['Transfer-Encoding: chunked, chunked', 'node', post('Transfer-Encoding: chunked, chunked\r\n', chunkedThenSmuggled)],
      ['two Transfer-Encoding: chunked lines', 'node', post('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', chunkedThenSmuggled)],
      ['obs-fold in Transfer-Encoding', 'node', post('Transfer-Encoding: gzip,\r\n chunked\r\n', chunkedThenSmuggled)],
      ['obs-fold in Content-Length', 'node', post('Content-Length: 5\r\n 0\r\n', helloThenSmuggled)],
      ['obs-fold in Host', 'node', `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\n other.localhost\r\n\r\n`],
      ['obs-fold in an ordinary field', 'node', `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nX-Note: one\r\n two\r\n\r\n`],
      // These two reach the handler, but the parser refuses right after the head, before any answer of ours.
      ['Transfer-Encoding: gzip', 'node', post('Transfer-Encoding: gzip\r\n', helloThenSmuggled)],
      ['Transfer-Encoding: chunked;x=y', 'node', post('Transfer-Encoding: chunked;x=y\r\n', chunkedThenSmuggled)],
      // Node reads these as chunked and would parse the smuggled request after them.
      ['two Transfer-Encoding lines, gzip then chunked', 'proxy', post('Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n', chunkedThenSmuggled)],
      ['two Transfer-Encoding lines, identity then chunked', 'proxy', post('Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n', chunkedThenSmuggled)],
      ['Transfer-Encoding on HTTP/1.0 (kept alive)', 'proxy', `POST ${PREFIX}/x HTTP/1.0\r\nHost: ${HOST}\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedThenSmuggled}`],
      ['two Host lines, same value', 'proxy', `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nHOST: ${HOST}\r\n\r\n`],
      ['two Host lines, different values', 'proxy', `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nHost: other.localhost\r\n\r\n`],
    ];

    // The detail each refusal of the proxy logs: what an operator reads to tell them apart.
    const details: Record<string, string> = {
      'two Transfer-Encoding lines, gzip then chunked': 'more than one Transfer-Encoding field line',
      'two Transfer-Encoding lines, identity then chunked': 'more than one Transfer-Encoding field line',
      'Transfer-Encoding on HTTP/1.0 (kept alive)': 'Transfer-Encoding on an HTTP/1.0 request',
      'two Host lines, same value': 'more than one Host field line',
      'two Host lines, different values': 'more than one Host field line',
    };

    it.each(cases)('%s (refused by %s)', async (name, refuser, bytes) => {
      const result = await sendRaw(proxy.port, bytes, 1000);
      expect(result.responses.map((r) => r.status)).toEqual([400]);
      expect(result.closedByServer).toBe(true);
      await expectNothingUpstream();
      const response = result.responses[0]!;
      // The proxy's refusals it answered (a debug record says it found the client gone).
      const logged = records.filter((r) => r.code === 'BAD_REQUEST' && r.level !== 'debug');
      if (refuser === 'node') {
        expect({ proxyStatus: response.headers['proxy-status'], logged }).toEqual({ proxyStatus: undefined, logged: [] });
      } else {
        expect(response.headers['proxy-status']).toBe('proxy; error=http_request_error');
        expect(response.body.toString()).toBe('Bad Request');
        expect(logged.map((r) => r.message)).toEqual([details[name]]);
      }
    });

    it('one Transfer-Encoding field `gzip, chunked` is sound framing: forwarded, coding list and body intact', async () => {
      const connection = await exchange(proxy.port, post('Transfer-Encoding: gzip, chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'));
      try {
        expect(statuses(connection.responses())).toEqual([200]);
        expect(upstream.seen).toHaveLength(1);
        expect(upstream.seen[0]!.headers['transfer-encoding']).toBe('gzip, chunked');
        expect(upstream.seen[0]!.body.toString()).toBe('hello');
      } finally {
        connection.destroy();
      }
    });

    it('fields whose names are as long as Host, Content-Length or Transfer-Encoding are not taken for them', async () => {
      // 4, 14 and 17 characters: the lengths the framing scan compares names at.
      const fields = 'From: a@example.test\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\nAccept-Charset: utf-8\r\nX-Custom-Field: 1\r\nIf-Modified-Since: Tue, 01 Dec 2026 00:00:00 GMT\r\n';
      const connection = await exchange(proxy.port, post(`${fields}Transfer-Encoding: chunked\r\n`, '5\r\nhello\r\n0\r\n\r\n'));
      try {
        expect(statuses(connection.responses())).toEqual([200]);
        expect(upstream.seen.map((s) => [s.url, s.body.toString(), s.headers['accept-charset'], s.headers['if-modified-since']])).toEqual([
          ['/x', 'hello', 'utf-8', 'Tue, 01 Dec 2026 00:00:00 GMT'],
        ]);
        expect(records.filter((r) => r.code === 'BAD_REQUEST')).toEqual([]);
      } finally {
        connection.destroy();
      }
    });

    it('Transfer-Encoding on HTTP/1.0 is refused by the proxy itself, and logged', async () => {
      const result = await sendRaw(proxy.port, `POST ${PREFIX}/x HTTP/1.0\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, 1000);
      expect(result.responses.map((r) => r.status)).toEqual([400]);
      const response = result.responses[0]!;
      expect(response.body.toString()).toBe('Bad Request');
      expect(response.headers['proxy-status']).toBe('proxy; error=http_request_error');
      expect(result.closedByServer).toBe(true);
      await expectNothingUpstream();
      expect(records.filter((r) => r.code === 'BAD_REQUEST')).toHaveLength(1);
      expect(records.find((r) => r.code === 'BAD_REQUEST')).toMatchObject({ level: 'info', status: 400 });
    });
  });

  describe('a request pipelined behind one the proxy refused', () => {
    // BadRequestError (src/errors.ts): "Refused before routing, and the
    // connection is closed: where its body ends cannot be trusted." Node has
    // already parsed whatever followed on the connection by then.
    it.each([
      ['Transfer-Encoding on HTTP/1.0 (kept alive)', `POST ${PREFIX}/x HTTP/1.0\r\nHost: ${HOST}\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
      ['two Host lines', `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nHost: other.localhost\r\n\r\n`],
      ['absolute-form disagreeing with Host', `GET http://other.localhost${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`],
    ])('%s: never reaches the upstream', async (_case, refused) => {
      // A pooled upstream connection is ready, as it is on any busy proxy.
      const warm = await exchange(proxy.port, `GET ${PREFIX}/warm HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      warm.destroy();
      expect(upstream.arrived).toEqual(['/warm']);
      upstream.arrived.length = 0;
      upstream.seen.length = 0;

      const result = await sendRaw(proxy.port, refused + SMUGGLED_VIA_PROXY, 1000);
      expect(result.responses.map((r) => r.status)).toEqual([400]);
      expect(result.responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
      expect(result.closedByServer).toBe(true);
      await expectNothingUpstream();
    });
  });

  describe('Host', () => {
    it.each([
      [HOST, 'other.localhost'],
      ['other.localhost', HOST],
    ])('two Host lines (%s, then %s) are refused', async (first, second) => {
      const result = await sendRaw(proxy.port, `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${first}\r\nHost: ${second}\r\n\r\n`, 1000);
      expect(result.responses.map((r) => r.status)).toEqual([400]);
      expect(result.responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
      expect(result.closedByServer).toBe(true);
      await expectNothingUpstream();
    });

    it('an absolute-form target whose authority disagrees with Host is refused', async () => {
      const result = await sendRaw(proxy.port, `GET http://other.localhost${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, 1000);
      expect(result.responses.map((r) => r.status)).toEqual([400]);
      expect(result.responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
      expect(result.closedByServer).toBe(true);
      await expectNothingUpstream();
      expect(records.filter((r) => r.code === 'BAD_REQUEST').map((r) => r.message)).toEqual(['Host disagrees with the absolute-form request-target']);
    });

    it.each([
      ['empty', ''],
      ['not a host name', 'app localhost'],
    ])('a Host the proxy cannot read (%s) is a 400 MISSING_HOST, never routed', async (_case, value) => {
      const result = await sendRaw(proxy.port, `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${value}\r\n\r\n`, 1000);
      expect(result.responses.map((r) => r.status)).toEqual([400]);
      expect(result.responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
      await expectNothingUpstream();
      expect(records.filter((r) => r.status === 400).map((r) => r.code)).toEqual(['MISSING_HOST']);
    });
  });

  describe('absolute-form', () => {
    it('is forwarded in origin-form, below the mount path', async () => {
      const connection = await exchange(proxy.port, `GET http://${HOST}${PREFIX}/p?q=1 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      try {
        const responses = connection.responses();
        expect(statuses(responses)).toEqual([200]);
        expect(upstream.seen.map((s) => s.url)).toEqual(['/p?q=1']);
        expect(upstream.seen[0]!.headers.host).toBe(HOST);
        expect(responses[0]!.body.toString()).toBe('/p?q=1');
      } finally {
        connection.destroy();
      }
    });

    it('for a host with no route (Host agreeing) is a proxy 404', async () => {
      const connection = await exchange(proxy.port, `GET http://nobody.localhost${PREFIX}/p HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n`);
      try {
        const responses = connection.responses();
        expect(statuses(responses)).toEqual([404]);
        expect(responses[0]!.headers['proxy-status']).toBe('proxy; error=destination_not_found');
        await expectNothingUpstream();
      } finally {
        connection.destroy();
      }
    });
  });

  describe('the client side of the connection', () => {
    it('answers three pipelined requests in order, each with its own body', async () => {
      const one = (path: string) => `GET ${PREFIX}${path} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;
      const connection = await openRaw(proxy.port);
      try {
        await connection.write(one('/slow/1') + one('/2') + one('/3'));
        const all = await connection.waitForResponses(3, 2000);
        expect({ all, wire: wire(connection) }).toMatchObject({ all: true });
        await sleep(100);
        const responses = connection.responses();
        expect(statuses(responses)).toEqual([200, 200, 200]);
        expect(responses.map((r) => r.body.toString())).toEqual(['/slow/1', '/2', '/3']);
        expect([...upstream.arrived].sort()).toEqual(['/2', '/3', '/slow/1']);
        expect(connection.closedByServer()).toBe(false);
      } finally {
        connection.destroy();
      }
    });

    it('`Connection: close` from the client: the response says so and the proxy closes the socket after it', async () => {
      const connection = await openRaw(proxy.port);
      try {
        await connection.write(`GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
        expect(await connection.waitForResponses(1, 1000)).toBe(true);
        const response = connection.responses()[0]!;
        expect(response.status).toBe(200);
        expect(response.headers.connection).toBe('close');
        expect(response.body.toString()).toBe('/x');
        expect(await connection.waitForClose(300)).toBe(true);
        expect(connection.responses()).toHaveLength(1);
      } finally {
        connection.destroy();
      }
    });

    describe('Upgrade: h2c', () => {
      let app: Running;
      let honest: HonestProxy;

      beforeAll(async () => {
        honest = createProxy({ routes: { [HOST]: upstream.url }, logger } satisfies ProxyOptions);
        const expressApp = express();
        expressApp.use(PREFIX, honest);
        const server = http.createServer(expressApp);
        server.on('upgrade', honest.upgrade);
        app = await listen(server);
      });
      afterAll(async () => {
        await app.close();
        honest.close();
      });

      const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';

      it('is answered as plain HTTP/1.1 with the upstream response; no upgrade field reaches the upstream', async () => {
        const result = await sendRaw(app.port, `GET ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\n${h2c}\r\n`, 1000);
        expect(result.text.startsWith('HTTP/1.1 200 ')).toBe(true);
        expect(result.responses.map((r) => r.status)).toEqual([200]);
        expect(upstream.seen).toHaveLength(1);
        // An upgrade bypasses Express: its url arrives unstripped by the mount path (create-proxy.ts, HonestProxy.upgrade).
        expect(upstream.seen[0]!.url).toBe(`${PREFIX}/x`);
        expect(result.responses[0]!.body.toString()).toBe(upstream.seen[0]!.url);
        const headers = upstream.seen[0]!.headers;
        expect(headers.upgrade).toBeUndefined();
        expect(headers['http2-settings']).toBeUndefined();
        expect(String(headers.connection).toLowerCase()).not.toContain('upgrade');
        expect(result.closedByServer).toBe(true);
      });

      it('with a body is refused with 400: Node parsed no body on an upgrade', async () => {
        const result = await sendRaw(app.port, `POST ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\n${h2c}Content-Length: 5\r\n\r\nhello`, 1000);
        expect(result.responses.map((r) => r.status)).toEqual([400]);
        expect(result.responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
        expect(result.closedByServer).toBe(true);
        await expectNothingUpstream();
      });
    });

    describe('an early answer while the body is still coming never stalls the next request', () => {
      it('a small declared body after a 404 is drained, and the next request on the connection is served', async () => {
        const connection = await openRaw(proxy.port);
        try {
          await connection.write(`POST ${PREFIX}/x HTTP/1.1\r\nHost: nobody.localhost\r\nContent-Length: 20\r\n\r\n`);
          expect(await connection.waitForResponses(1, 1000)).toBe(true);
          expect(connection.responses()[0]!.status).toBe(404);
          // Twenty bytes that look like a request: they must be read as body, not parsed.
          const body = 'GET /ab HTTP/1.1\r\n\r\n';
          expect(body).toHaveLength(20);
          await connection.write(body);
          await connection.write(`GET ${PREFIX}/second HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
          const both = await connection.waitForResponses(2, 1000);
          expect({ both, wire: wire(connection) }).toMatchObject({ both: true });
          await sleep(100);
          const responses = connection.responses();
          expect(statuses(responses)).toEqual([404, 200]);
          expect(responses[1]!.body.toString()).toBe('/second');
          expect(upstream.arrived).toEqual(['/second']);
        } finally {
          connection.destroy();
        }
      });

      it('a large declared body after a 404 gets `connection: close` and the socket is closed', async () => {
        const connection = await openRaw(proxy.port);
        try {
          await connection.write(`POST ${PREFIX}/x HTTP/1.1\r\nHost: nobody.localhost\r\nContent-Length: 10000000\r\n\r\n${'x'.repeat(1024)}`);
          expect(await connection.waitForResponses(1, 1000)).toBe(true);
          const response = connection.responses()[0]!;
          expect(response.status).toBe(404);
          expect(response.headers.connection).toBe('close');
          expect(await connection.waitForClose(1000)).toBe(true);
          await expectNothingUpstream();
        } finally {
          connection.destroy();
        }
      });

      it('a 502 for an unreachable upstream, then the next request on the connection is served', async () => {
        const connection = await openRaw(proxy.port);
        try {
          await connection.write(`POST ${PREFIX}/x HTTP/1.1\r\nHost: down.localhost\r\nContent-Length: 100\r\n\r\n${'y'.repeat(100)}`);
          expect(await connection.waitForResponses(1, 1000)).toBe(true);
          await connection.write(`GET ${PREFIX}/after HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
          const both = await connection.waitForResponses(2, 1000);
          expect({ both, wire: wire(connection) }).toMatchObject({ both: true });
          const responses = connection.responses();
          expect(statuses(responses)).toEqual([502, 200]);
          expect(responses[0]!.headers['proxy-status']).toBe('proxy; error=connection_refused');
          expect(responses[1]!.body.toString()).toBe('/after');
        } finally {
          connection.destroy();
        }
      });

      it('a chunked body over the limit: 413 with `connection: close`, and the socket is closed', async () => {
        const connection = await openRaw(limit1000.port);
        try {
          await connection.write(`POST ${PREFIX}/x HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n`);
          for (let i = 0; i < 3; i++) {
            await connection.write(`3e8\r\n${'z'.repeat(1000)}\r\n`);
            await sleep(20);
          }
          await connection.write('0\r\n\r\n');
          expect(await connection.waitForResponses(1, 1000)).toBe(true);
          const response = connection.responses()[0]!;
          expect(response.status).toBe(413);
          expect(response.headers.connection).toBe('close');
          expect(await connection.waitForClose(1000)).toBe(true);
          expect(connection.responses()).toHaveLength(1);
          await sleep(50);
          expect(upstream.seen).toEqual([]);
        } finally {
          connection.destroy();
        }
      });
    });
  });
});

describe('asterisk-form, on a plain node:http server', () => {
  let upstream: RecordingUpstream;
  let running: Running;
  let honest: HonestProxy;
  const { logger, records } = captureLogs();

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    honest = createProxy({ routes: { [HOST]: upstream.url }, logger });
    running = await listen(http.createServer((req: IncomingMessage, res) => honest(req, res)));
  });
  afterAll(async () => {
    await running.close();
    honest.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.seen.length = 0;
    upstream.arrived.length = 0;
    records.length = 0;
  });

  it('forwards `OPTIONS *` with the request-target `*` exactly', async () => {
    const result = await sendRaw(running.port, `OPTIONS * HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, 1000);
    expect(result.responses.map((r) => r.status)).toEqual([200]);
    expect(upstream.seen.map((s) => [s.method, s.url])).toEqual([['OPTIONS', '*']]);
  });

  it('refuses `GET *` with 400, nothing upstream', async () => {
    const result = await sendRaw(running.port, `GET * HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, 1000);
    expect(result.responses.map((r) => r.status)).toEqual([400]);
    expect(result.responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
    expect(result.closedByServer).toBe(true);
    await sleep(50);
    expect(upstream.arrived).toEqual([]);
    expect(records.filter((r) => r.code === 'BAD_REQUEST').map((r) => r.message)).toEqual(['asterisk-form request-target on a method other than OPTIONS']);
  });

  // Absolute-form without a path: Express would route it by the path it lacks, a plain server hands it straight over.
  it.each([
    ['no path', `http://${HOST}`, '/'],
    ['a query and no path', `http://${HOST}?q=1`, '/?q=1'],
    ['a path and a query', `http://${HOST}/p?q=1`, '/p?q=1'],
  ])('forwards an absolute-form target with %s in origin-form', async (_case, target, forwarded) => {
    const result = await sendRaw(running.port, `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, 1000);
    expect(result.responses.map((r) => r.status)).toEqual([200]);
    expect(upstream.seen.map((s) => s.url)).toEqual([forwarded]);
  });

  it.each([
    ['another scheme', `ftp://${HOST}/x`, 'request-target is neither origin-form nor absolute-form'],
    ['a scheme that only ends in http', `xhttp://${HOST}/x`, 'request-target is neither origin-form nor absolute-form'],
    ['userinfo', `http://user@${HOST}/x`, 'userinfo in the request-target'],
  ])('refuses a request-target with %s: 400, nothing upstream', async (_case, target, detail) => {
    const result = await sendRaw(running.port, `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, 1000);
    expect(result.responses.map((r) => r.status)).toEqual([400]);
    expect(result.responses[0]!.headers['proxy-status']).toBe('proxy; error=http_request_error');
    await sleep(50);
    expect(upstream.arrived).toEqual([]);
    expect(records.filter((r) => r.code === 'BAD_REQUEST').map((r) => r.message)).toEqual([detail]);
  });
});
