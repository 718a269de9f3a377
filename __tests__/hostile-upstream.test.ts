import { fork, type ChildProcess } from 'node:child_process';
import net, { type Socket } from 'node:net';
import path from 'node:path';
import { openRaw } from './helpers/raw-client.ts';
import { listen, type Running } from './helpers/servers.ts';
import { EXPRESS_VERSIONS, PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import type { InsecureParserChildMessage } from './fixtures/insecure-parser/proxy-child.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import {
  DESTROY,
  END,
  header,
  sendRaw,
  startScriptedUpstream,
  wait,
  type ClientExchange,
  type ScriptedUpstream,
  type Step,
  type UpstreamRequest,
} from './helpers/scripted-upstream.ts';

/**
 * An upstream that breaks HTTP on purpose, byte for byte, and a raw client
 * that reads exactly what the proxy sends back. Whatever the upstream does,
 * the client gets either the upstream's valid response or a typed 502, never
 * the upstream's garbage, and the process survives to answer the next request.
 */

const HOST = 'app.localhost';
const RESPONSE_TIMEOUT = 500;
const SMUGGLED = 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSMUGGL';

// A crash in a proxy handler must not go unnoticed. Jest gives the test file
// its own copy of `process`, whose listeners the real process never calls; a
// function made by a Node core module's realm sees the real one.
const realProcess = new (net.Socket.constructor as FunctionConstructor)('return process')() as NodeJS.Process;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);

beforeAll(() => {
  realProcess.on('uncaughtException', onUncaught);
  realProcess.on('unhandledRejection', onUncaught);
});
afterAll(() => {
  realProcess.off('uncaughtException', onUncaught);
  realProcess.off('unhandledRejection', onUncaught);
});

function get(path: string, extra = '', version = '1.1'): string {
  return `GET ${PREFIX}${path} HTTP/${version}\r\nHost: ${HOST}\r\n${extra}\r\n`;
}

/** The normal answer: names the connection and the request's place on it. */
function okReply(request: UpstreamRequest): Step[] {
  const body = `ok c${request.connection} r${request.onConnection}`;
  return [`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`];
}

interface Setup {
  upstream: ScriptedUpstream;
  proxy: ProxyApp;
  records: LogRecord[];
  close(): Promise<void>;
}

describe.each(EXPRESS_VERSIONS)('a hostile upstream (%s)', (_name, express) => {
  const open: Setup[] = [];

  /** `hostile` answers every request but `/ok`, which gets the normal answer. */
  async function setup(hostile: (request: UpstreamRequest) => Step[]): Promise<Setup> {
    const upstream = await startScriptedUpstream((request) => (request.target === '/ok' ? okReply(request) : hostile(request)));
    const { logger, records } = captureLogs('debug');
    const proxy = await startProxyApp(express, {
      routes: { [HOST]: upstream.url },
      logger,
      timeouts: { connect: 500, response: RESPONSE_TIMEOUT, idle: 2_000 },
    });
    const running: Setup = { upstream, proxy, records, close: async () => void (await Promise.all([proxy.close(), upstream.close()])) };
    open.push(running);
    return running;
  }

  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  /** The proxy is alive and well: a normal request through it is answered 200 by the upstream. */
  async function expectAlive({ proxy, upstream }: Setup): Promise<UpstreamRequest> {
    const before = upstream.requests.length;
    const ex = await sendRaw(proxy.port, get('/ok'), { lingerMs: 30 });
    expect(ex.final?.status).toBe(200);
    expect(ex.final?.complete).toBe(true);
    const served = upstream.requests.slice(before).find((r) => r.target === '/ok');
    expect(served).toBeDefined();
    expect(ex.final?.body.toString('latin1')).toBe(`ok c${served!.connection} r${served!.onConnection}`);
    expect(ex.responses).toHaveLength(1);
    expect(ex.leftover.length).toBe(0);
    return served!;
  }

  function expectBadGateway(ex: ClientExchange, proxyStatus: string): void {
    expect(ex.timedOut).toBe(false);
    expect(ex.final?.statusLine).toBe('HTTP/1.1 502 Bad Gateway');
    expect(ex.final?.complete).toBe(true);
    expect(ex.final?.body.toString('latin1')).toBe('Bad Gateway');
    expect(header(ex.final, 'proxy-status')).toBe(`proxy; error=${proxyStatus}`);
    expect(ex.responses).toHaveLength(1);
    expect(ex.leftover.length).toBe(0);
  }

  function expectNoErrorRecords(records: LogRecord[]): void {
    expect(records.filter((r) => r.level === 'error')).toEqual([]);
  }

  function protocolErrorRecord(records: LogRecord[]): LogRecord | undefined {
    return records.find((r) => r.code === 'UPSTREAM_PROTOCOL_ERROR');
  }

  // 1
  it.each(['000', '099', '600', '1000'])('502 http_protocol_error for the invalid status code %s', async (code) => {
    const s = await setup(() => [`HTTP/1.1 ${code} OK\r\nContent-Length: 2\r\n\r\nhi`]);
    const ex = await sendRaw(s.proxy.port, get('/bad-status'));
    expectBadGateway(ex, 'http_protocol_error');
    expect(ex.text).not.toContain(`${code} OK`);
    expect(protocolErrorRecord(s.records)).toMatchObject({ level: 'warn', status: 502, code: 'UPSTREAM_PROTOCOL_ERROR', proxyStatus: 'http_protocol_error' });
    expectNoErrorRecords(s.records);
    const served = await expectAlive(s);
    // The connection that carried the invalid response is not reused.
    expect(served.connection).not.toBe(s.upstream.requests[0]!.connection);
  });

  // 2
  it.each([
    ['\\x01', 'O\x01K', 0x01],
    ['\\x7f', 'O\x7fK', 0x7f],
  ])('502 http_protocol_error for a reason phrase with the control character %s, which never reaches the client', async (_label, reason, byte) => {
    const s = await setup(() => [`HTTP/1.1 200 ${reason}\r\nContent-Length: 2\r\n\r\nhi`]);
    const ex = await sendRaw(s.proxy.port, get('/bad-reason'), { lingerMs: 50 });
    expectBadGateway(ex, 'http_protocol_error');
    expect(ex.raw.includes(byte)).toBe(false);
    expect(protocolErrorRecord(s.records)).toMatchObject({ level: 'warn', status: 502, code: 'UPSTREAM_PROTOCOL_ERROR' });
    expectNoErrorRecords(s.records);
    const served = await expectAlive(s);
    expect(served.connection).not.toBe(s.upstream.requests[0]!.connection);
  });

  // 3
  it.each<[string, Step[]]>([
    ['the connection kept open', ['SSH-2.0-OpenSSH_9.2\r\n']],
    ['the connection then closed', ['SSH-2.0-OpenSSH_9.2\r\n', END]],
  ])('502 UPSTREAM_PROTOCOL_ERROR (not UNREACHABLE) for bytes that are not HTTP, %s', async (_label, steps) => {
    const s = await setup(() => steps);
    const ex = await sendRaw(s.proxy.port, get('/ssh'));
    expectBadGateway(ex, 'http_protocol_error');
    expect(ex.text).not.toContain('SSH');
    expect(protocolErrorRecord(s.records)).toMatchObject({ level: 'warn', status: 502, code: 'UPSTREAM_PROTOCOL_ERROR' });
    expect(s.records.filter((r) => r.code === 'UPSTREAM_UNREACHABLE')).toEqual([]);
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });

  // 4
  it('502 at once for a 101 to a request that asked for no upgrade, and the upstream connection is closed', async () => {
    const s = await setup(() => ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n']);
    const ex = await sendRaw(s.proxy.port, get('/plain'));
    expectBadGateway(ex, 'http_protocol_error');
    expect(ex.msUntil('HTTP/1.1 502')).toBeLessThan(RESPONSE_TIMEOUT);
    expect(ex.text).not.toContain('101');
    const asked = s.upstream.requests[0]!;
    expect(asked.headers.find(([name]) => name === 'upgrade')).toBeUndefined();
    expect(protocolErrorRecord(s.records)).toMatchObject({ level: 'warn', status: 502, code: 'UPSTREAM_PROTOCOL_ERROR' });
    expectNoErrorRecords(s.records);
    // The script never closes: only the proxy can have closed it.
    expect(await s.upstream.closed(asked.connection, 1_000)).toBe(true);
    const connection = s.upstream.connections[asked.connection - 1]!;
    expect(connection.closedByScript).toBe(false);
    expect(connection.peerEnded || connection.peerReset).toBe(true);
    const served = await expectAlive(s);
    expect(served.connection).not.toBe(asked.connection);
  });

  // 5
  const LINK = '</style.css>; rel=preload; as=style';
  const EARLY_HINTS = `HTTP/1.1 103 Early Hints\r\nLink: ${LINK}\r\n\r\n`;
  const HELLO = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello';

  it('relays 103 Early Hints with its Link to an HTTP/1.1 client, then the 200', async () => {
    const s = await setup(() => [EARLY_HINTS, wait(50), HELLO]);
    const ex = await sendRaw(s.proxy.port, get('/hints'), { lingerMs: 30 });
    expect(ex.timedOut).toBe(false);
    expect(ex.responses.map((r) => r.status)).toEqual([103, 200]);
    expect(ex.responses[0]!.statusLine).toBe('HTTP/1.1 103 Early Hints');
    expect(header(ex.responses[0], 'link')).toBe(LINK);
    expect(ex.final?.body.toString('latin1')).toBe('hello');
    expect(ex.final?.complete).toBe(true);
    expect(ex.leftover.length).toBe(0);
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });

  it('sends no 103 to an HTTP/1.0 client, only the 200', async () => {
    const s = await setup(() => [EARLY_HINTS, wait(50), HELLO]);
    const ex = await sendRaw(s.proxy.port, get('/hints', '', '1.0'), { lingerMs: 30 });
    expect(ex.timedOut).toBe(false);
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(ex.text).not.toContain('103');
    expect(ex.final?.body.toString('latin1')).toBe('hello');
    expect(ex.final?.complete).toBe(true);
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });

  it('passes over 102 Processing: the client gets the 200, no 102 and no hang', async () => {
    const s = await setup(() => ['HTTP/1.1 102 Processing\r\n\r\n', wait(50), HELLO]);
    const ex = await sendRaw(s.proxy.port, get('/slow'), { lingerMs: 30 });
    expect(ex.timedOut).toBe(false);
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(ex.text).not.toContain('102');
    expect(ex.final?.body.toString('latin1')).toBe('hello');
    expect(ex.final?.complete).toBe(true);
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });

  it('passes over an unsolicited 100 Continue: the client gets the 200', async () => {
    const s = await setup(() => ['HTTP/1.1 100 Continue\r\n\r\n', wait(20), HELLO]);
    const ex = await sendRaw(s.proxy.port, get('/eager'), { lingerMs: 30 });
    expect(ex.timedOut).toBe(false);
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(ex.text).not.toContain('100 Continue');
    expect(ex.final?.body.toString('latin1')).toBe('hello');
    expect(ex.final?.complete).toBe(true);
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });

  // 6
  const HI = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi';
  const NO_CONTENT = 'HTTP/1.1 204 No Content\r\n\r\n';
  const NOT_MODIFIED = 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n';
  const HEAD_ANSWER = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';
  it.each<[string, string, Step[], string, string, string]>([
    ['a 200 (same write)', 'GET', [HI + SMUGGLED], 'HTTP/1.1 200 OK', 'hi', 'SMUGGL'],
    ['a 200 (20 ms later)', 'GET', [HI, wait(20), SMUGGLED], 'HTTP/1.1 200 OK', 'hi', 'SMUGGL'],
    // Not in the brief's list: junk that is not HTTP at all, in the same segment as a complete 200.
    ['a 200 (same write, bytes that are not HTTP)', 'GET', [HI + 'bogus'], 'HTTP/1.1 200 OK', 'hi', 'bogus'],
    ['a 204 (same write)', 'GET', [NO_CONTENT + SMUGGLED], 'HTTP/1.1 204 No Content', '', 'SMUGGL'],
    ['a 204 (20 ms later)', 'GET', [NO_CONTENT, wait(20), SMUGGLED], 'HTTP/1.1 204 No Content', '', 'SMUGGL'],
    ['a 304 (same write)', 'GET', [NOT_MODIFIED + SMUGGLED], 'HTTP/1.1 304 Not Modified', '', 'SMUGGL'],
    ['a 304 (20 ms later)', 'GET', [NOT_MODIFIED, wait(20), SMUGGLED], 'HTTP/1.1 304 Not Modified', '', 'SMUGGL'],
    ['the answer to a HEAD (same write)', 'HEAD', [HEAD_ANSWER + 'bogus'], 'HTTP/1.1 200 OK', '', 'bogus'],
    ['the answer to a HEAD (20 ms later)', 'HEAD', [HEAD_ANSWER, wait(20), 'bogus'], 'HTTP/1.1 200 OK', '', 'bogus'],
  ])('bytes after %s never reach a client, and the connection that carried them is not reused', async (_label, method, steps, statusLine, body, marker) => {
    const s = await setup(() => steps);
    const ex = await sendRaw(s.proxy.port, `${method} ${PREFIX}/answer HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, { lingerMs: 100 });
    expect(ex.timedOut).toBe(false);
    expect(ex.final?.statusLine).toBe(statusLine);
    expect(ex.final?.complete).toBe(true);
    expect(ex.final?.body.toString('latin1')).toBe(body);
    if (method === 'HEAD') expect(header(ex.final, 'content-length')).toBe('5');
    expect(ex.responses).toHaveLength(1);
    expect(ex.leftover.length).toBe(0);
    expect(ex.text).not.toContain(marker);

    const hostile = s.upstream.requests[0]!;
    expect(hostile.target).toBe('/answer');
    const served = await expectAlive(s);
    expect(served.connection).not.toBe(hostile.connection);
    expect(s.upstream.connections[hostile.connection - 1]!.requests).toHaveLength(1);
    expectNoErrorRecords(s.records);
  });

  // 7
  it.each([
    ['Content-Length: 10', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n'],
    ['Transfer-Encoding: chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'],
  ])('a complete 502 connection_terminated, never a 200, when the upstream dies after a %s head and before the body', async (_label, head) => {
    const s = await setup(() => [head, DESTROY]);
    const ex = await sendRaw(s.proxy.port, get('/dies'));
    expectBadGateway(ex, 'connection_terminated');
    expect(ex.text).not.toContain('200 OK');
    const record = s.records.find((r) => r.level === 'warn');
    expect(record).toMatchObject({ status: 502, proxyStatus: 'connection_terminated' });
    expect(record?.afterResponseStarted).toBeUndefined();
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });

  it.each([
    ['Content-Length: 10', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello'],
    ['Transfer-Encoding: chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n'],
  ])('a truncated 200 the client can tell from a complete one when the upstream dies part way through a %s body', async (_label, partial) => {
    const s = await setup(() => [partial, DESTROY]);
    const ex = await sendRaw(s.proxy.port, get('/half'));
    expect(ex.timedOut).toBe(false);
    expect(ex.final?.statusLine).toBe('HTTP/1.1 200 OK');
    expect(ex.final?.body.toString('latin1')).toBe('hello');
    expect(ex.closed).toBe(true);
    expect(ex.final?.complete).toBe(false);
    expect(ex.final?.framing).not.toBe('close');
    expect(s.records.find((r) => r.level === 'warn')).toMatchObject({ status: 502, proxyStatus: 'connection_terminated', afterResponseStarted: true });
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });

  // 8
  it('sends an event stream head at once, not held back until the first event', async () => {
    const s = await setup(() => [
      'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n',
      wait(300),
      '9\r\ndata: 1\n\n\r\n',
      '0\r\n\r\n',
    ]);
    const ex = await sendRaw(s.proxy.port, get('/events', 'Accept: text/event-stream\r\n'));
    expect(ex.timedOut).toBe(false);
    expect(ex.final?.status).toBe(200);
    expect(header(ex.final, 'content-type')).toBe('text/event-stream');
    expect(ex.final?.body.toString('latin1')).toBe('data: 1\n\n');
    expect(ex.final?.complete).toBe(true);
    const headAt = ex.msUntil('\r\n\r\n')!;
    const eventAt = ex.msUntil('data: 1')!;
    expect(headAt).toBeLessThan(150);
    expect(eventAt).toBeGreaterThanOrEqual(250);
    expect(eventAt - headAt).toBeGreaterThan(200);
    expectNoErrorRecords(s.records);
    await expectAlive(s);
  });
});

/**
 * An upstream that answers as soon as it has a request's head, without
 * waiting for the body (a 413, an auth refusal): everything after the head on
 * a connection is only counted, never parsed.
 */
async function startEarlyAnswerUpstream(answer: string): Promise<Running & { heads: Array<{ connection: number; target: string }>; afterHead: number[]; closed: boolean[] }> {
  const heads: Array<{ connection: number; target: string }> = [];
  const afterHead: number[] = [];
  const closed: boolean[] = [];
  const server = net.createServer((socket: Socket) => {
    const connection = afterHead.push(0) - 1;
    closed.push(false);
    socket.on('error', () => {});
    socket.once('close', () => (closed[connection] = true));
    let head = Buffer.alloc(0);
    let headDone = false;
    socket.on('data', (chunk: Buffer) => {
      if (headDone) {
        afterHead[connection]! += chunk.length;
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      headDone = true;
      afterHead[connection]! += head.length - end - 4;
      heads.push({ connection, target: head.subarray(0, end).toString('latin1').split(' ')[1]! });
      socket.write(answer);
    });
  });
  return Object.assign(await listen(server), { heads, afterHead, closed });
}

describe.each(EXPRESS_VERSIONS)('an upstream that answers before it has read the request body (%s)', (_name, express) => {
  const EARLY = 'HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\nupload refused :(';
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('a large body still coming: the answer reaches the client intact, then both connections close, and nothing more goes upstream', async () => {
    const upstream = await startEarlyAnswerUpstream(EARLY);
    const { logger, records } = captureLogs('info');
    const proxy = await startProxyApp(express, { routes: { [HOST]: upstream.url }, logger });
    const connection = await openRaw(proxy.port);
    try {
      await connection.write(`POST ${PREFIX}/upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 10000000\r\n\r\n${'x'.repeat(1024)}`);
      expect(await connection.waitForResponses(1, 1_000)).toBe(true);
      const [response] = connection.responses();
      expect(response!.statusLine).toBe('HTTP/1.1 413 Payload Too Large');
      expect(response!.headers['content-type']).toBe('text/plain');
      expect(String(response!.body)).toBe('upload refused :(');
      // The rest of a 10 MB body will not be read: the connection ends after the answer.
      expect(await connection.waitForClose(1_000)).toBe(true);
      // The upstream connection carries a request half sent: it is closed, not pooled.
      const deadline = performance.now() + 1_000;
      while (!upstream.closed[0] && performance.now() < deadline) await sleep(10);
      expect(upstream.closed).toEqual([true]);
      // What the client sends after the answer never reaches the upstream.
      await connection.write('y'.repeat(64 * 1024));
      await connection.write(`GET ${PREFIX}/after HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      await sleep(100);
      expect(upstream.heads).toEqual([{ connection: 0, target: '/upload' }]);
      expect(upstream.afterHead[0]).toBeLessThanOrEqual(1024);
      expect(connection.responses()).toHaveLength(1);
      expect(records.filter((r) => r.level === 'warn' || r.level === 'error')).toEqual([]);
    } finally {
      connection.destroy();
      await proxy.close();
      await upstream.close();
    }
  });

  it('the rest of a small declared body, sent after the answer, is read and dropped, and the next request on the connection is served', async () => {
    const upstream = await startEarlyAnswerUpstream(EARLY);
    const { logger } = captureLogs('info');
    const proxy = await startProxyApp(express, { routes: { [HOST]: upstream.url }, logger });
    const connection = await openRaw(proxy.port);
    try {
      // Twenty bytes that look like a request: they must be read as body, never parsed.
      const body = 'GET /ab HTTP/1.1\r\n\r\n';
      expect(body).toHaveLength(20);
      // Node's client sends the upstream request's head with its first body byte: send ten.
      await connection.write(`POST ${PREFIX}/upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 20\r\n\r\n${body.slice(0, 10)}`);
      expect(await connection.waitForResponses(1, 1_000)).toBe(true);
      expect(String(connection.responses()[0]!.body)).toBe('upload refused :(');
      await connection.write(body.slice(10));
      await connection.write(`GET ${PREFIX}/second HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      expect(await connection.waitForResponses(2, 1_000)).toBe(true);
      expect(connection.responses().map((r) => r.status)).toEqual([413, 413]);
      expect(connection.closedByServer()).toBe(false);
      // /second went on a fresh upstream connection: the first, its request half sent, was closed.
      expect(upstream.heads).toEqual([
        { connection: 0, target: '/upload' },
        { connection: 1, target: '/second' },
      ]);
      expect(upstream.closed[0]).toBe(true);
      // Only the ten bytes sent before the answer reached the upstream.
      expect(upstream.afterHead).toEqual([10, 0]);
    } finally {
      connection.destroy();
      await proxy.close();
      await upstream.close();
    }
  });
});

/**
 * A head that Node's client parses and Node's server refuses to write: the
 * writeHead catch in src/upstream/response.ts. With Node's default parser the
 * two agree on every byte; with --insecure-http-parser (set by someone to
 * reach a sloppy upstream) the client takes a NUL in a field value, and the
 * server still throws ERR_INVALID_CHAR on it, inside an event handler. So the
 * proxy runs in a child process started with that flag, once in Express
 * (which has set X-Powered-By, so Node adds the upstream's fields one by one
 * before it throws) and once on a plain node:http server.
 */
describe('an upstream head the client side refuses to write (a proxy process with --insecure-http-parser)', () => {
  // Set-Cookie and X-Upstream come before the NUL: in Express, Node has taken them onto the response before it throws.
  const FIELDS = 'Set-Cookie: session=from-upstream\r\nX-Upstream: yes\r\nX-Bad: a\x00b\r\n';
  // One per place the relay writes the head: with the first body byte, at the end of an empty body, at once for an event stream.
  const SHAPES: Record<string, Step[]> = {
    '/body-in-one-packet': [`HTTP/1.1 200 OK\r\n${FIELDS}Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi`],
    '/body-still-coming': [`HTTP/1.1 200 OK\r\n${FIELDS}Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n`, wait(200), '0\r\n\r\n'],
    '/empty-body': [`HTTP/1.1 200 OK\r\n${FIELDS}Content-Length: 0\r\n\r\n`],
    '/event-stream': [`HTTP/1.1 200 OK\r\n${FIELDS}Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n`, wait(200), '0\r\n\r\n'],
  };
  let upstream: ScriptedUpstream;
  let child: ChildProcess;
  let ports: { express: number; plain: number };
  const messages: InsecureParserChildMessage[] = [];
  let stderr = '';

  beforeAll(async () => {
    upstream = await startScriptedUpstream((request) => SHAPES[request.target] ?? okReply(request));
    child = fork(path.join(import.meta.dirname, 'fixtures/insecure-parser/proxy-child.ts'), [upstream.url], {
      execArgv: ['--insecure-http-parser'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => (stderr += chunk));
    ports = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`proxy child not ready in 10 s: ${stderr}`)), 10_000);
      child.once('exit', (code) => reject(new Error(`proxy child exited with ${code} before it listened: ${stderr}`)));
      child.on('message', (message: InsecureParserChildMessage) => {
        messages.push(message);
        if (message.type === 'ready') {
          clearTimeout(timer);
          resolve({ express: message.express, plain: message.plain });
        }
      });
    });
  });
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await upstream?.close();
  });

  const logs = () => messages.filter((m): m is Extract<InsecureParserChildMessage, { type: 'log' }> => m.type === 'log');

  const WHERE = [
    ['in Express', 'express', PREFIX],
    ['on a plain node:http server', 'plain', ''],
  ] as const;
  it.each(WHERE.flatMap(([where, server, prefix]) => Object.keys(SHAPES).map((shape) => [where, shape, server, prefix] as const)))(
    '%s, %s: a 502 http_protocol_error with none of the upstream head, and the next request goes on a fresh connection',
    async (_where, shape, server, prefix) => {
      const port = ports[server];
      const before = upstream.requests.length;
      const logsBefore = logs().length;
      const ex = await sendRaw(port, `GET ${prefix}${shape} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, { lingerMs: 50 });
      expect(ex.timedOut).toBe(false);
      expect(ex.final?.statusLine).toBe('HTTP/1.1 502 Bad Gateway');
      expect(ex.final?.complete).toBe(true);
      expect(ex.final?.body.toString('latin1')).toBe('Bad Gateway');
      expect(header(ex.final, 'proxy-status')).toBe('proxy; error=http_protocol_error');
      expect(ex.responses).toHaveLength(1);
      // Not one field of the refused head: the fields Node took before it threw are gone too.
      expect(ex.final!.headers.map(([name]) => name).sort()).toEqual(
        ['cache-control', 'connection', 'content-length', 'content-type', 'date', 'keep-alive', 'proxy-status', 'x-content-type-options', 'x-request-id'].sort(),
      );
      expect(ex.raw.includes(0)).toBe(false);
      expect(ex.text).not.toContain('from-upstream');
      expect(logs().slice(logsBefore).filter((m) => m.level === 'warn' || m.level === 'error')).toEqual([
        expect.objectContaining({ level: 'warn', message: 'response head the client side refuses', fields: expect.objectContaining({ status: 502, code: 'UPSTREAM_PROTOCOL_ERROR', cause: expect.objectContaining({ code: 'ERR_INVALID_CHAR' }) }) }),
      ]);

      // The process lives on, and the connection that carried the refused head is not reused.
      const ok = await sendRaw(port, `GET ${prefix}/ok HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, { lingerMs: 30 });
      expect(ok.final?.status).toBe(200);
      const [refused, served] = upstream.requests.slice(before);
      expect([refused?.target, served?.target]).toEqual([shape, '/ok']);
      expect(served!.connection).not.toBe(refused!.connection);
      expect(await upstream.closed(refused!.connection, 1000)).toBe(true);
      expect(messages.filter((m) => m.type === 'uncaught')).toEqual([]);
      expect(child.exitCode).toBeNull();
    },
  );
});

// 9
it('no hostile upstream raised an uncaught exception or an unhandled rejection in this process', () => {
  expect(realProcess.pid).toBe(process.pid);
  expect(realProcess.listeners('uncaughtException')).toContain(onUncaught);
  expect(uncaught).toEqual([]);
});
