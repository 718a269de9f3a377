import { fork, type ChildProcess } from 'node:child_process';
import http, { type IncomingMessage } from 'node:http';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import { WebSocket, WebSocketServer } from 'ws';
import { createProxy, ProxyOptionsError, type ProxyOptions } from '../src/index.ts';
import { EXPRESS_VERSIONS, PREFIX } from './helpers/apps.ts';
import { captureLogs, type LogRecord } from './helpers/logs.ts';
import { openRaw, parseResponses } from './helpers/raw-client.ts';
import { listen, type Running } from './helpers/servers.ts';
import type { TransformChildMessage } from './fixtures/transform/proxy-child.ts';

/**
 * transformResponse against real upstreams: bodies decoded (gzip, deflate,
 * br), rewritten as they stream, sent unencoded; everything `when` rejects or
 * the proxy must not touch goes through byte for byte; failures are a 502
 * before the head and a cut response after it.
 */

const BANNER = '<script src="/__preview/banner.js"></script>';
const PREFIX_HTML = '<!doctype html><html lang="fr"><he';
const REST_HTML = 'ad><meta charset="utf-8"><title>Aperçu</title></head><body><h1>Déjà vu</h1></body></html>';
const HTML = PREFIX_HTML + REST_HTML;
const WITH_BANNER = HTML.replace('<head>', `<head>${BANNER}`);
const JSON_BODY = JSON.stringify({ ok: true, items: [1, 2, 3] });
const CODINGS = ['gzip', 'deflate', 'br', 'identity'] as const;
type Coding = (typeof CODINGS)[number];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `a` then `b`, encoded so that the bytes of `a` alone decode to all of `a` (a sync flush between them). */
async function encodeInTwo(coding: Coding, a: string, b: string): Promise<[Buffer, Buffer]> {
  if (coding === 'identity') return [Buffer.from(a), Buffer.from(b)];
  const encoder = coding === 'gzip' ? zlib.createGzip() : coding === 'deflate' ? zlib.createDeflate() : zlib.createBrotliCompress();
  const chunks: Buffer[] = [];
  encoder.on('data', (chunk: Buffer) => chunks.push(chunk));
  encoder.write(a);
  await new Promise<void>((resolve) => encoder.flush(coding === 'br' ? zlib.constants.BROTLI_OPERATION_FLUSH : zlib.constants.Z_SYNC_FLUSH, () => resolve()));
  const first = Buffer.concat(chunks.splice(0));
  await new Promise<void>((resolve) => encoder.once('end', resolve).end(b));
  return [first, Buffer.concat(chunks)];
}

/**
 * Puts `banner` right after `<head>`, wherever the chunks split it: the
 * last few bytes are held back until the next chunk shows whether they begin
 * the tag. Bytes as latin1, so a UTF-8 character split across chunks survives.
 */
function injectAfterHead(banner: string, onChunk?: (chunk: string) => void): Transform {
  const TAG = '<head>';
  let pending = '';
  let done = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onChunk?.(chunk.toString('latin1'));
      if (done) return callback(null, chunk);
      pending += chunk.toString('latin1');
      const at = pending.indexOf(TAG);
      if (at !== -1) {
        done = true;
        const out = pending.slice(0, at + TAG.length) + banner + pending.slice(at + TAG.length);
        pending = '';
        return callback(null, Buffer.from(out, 'latin1'));
      }
      const keep = Math.min(pending.length, TAG.length - 1);
      const ready = pending.slice(0, pending.length - keep);
      pending = pending.slice(pending.length - keep);
      callback(null, Buffer.from(ready, 'latin1'));
    },
    flush(callback) {
      callback(null, Buffer.from(pending, 'latin1'));
    },
  });
}

function upperCase(): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      callback(null, Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1'));
    },
  });
}

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** A request through the proxy, on a connection of its own; the body as bytes (Node's client decodes nothing). */
function get(port: number, host: string, pathname: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', method: init.method ?? 'GET', path: pathname, agent: false, headers: { host, ...init.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Field lines as pairs, less those that differ between any two responses (Date) or connections. */
function fieldLines(rawHeaders: string[]): Array<[string, string]> {
  const lines: Array<[string, string]> = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!['date', 'connection', 'keep-alive'].includes(rawHeaders[i]!.toLowerCase())) lines.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  }
  return lines;
}

const VALIDATORS = {
  etag: '"v1-abc"',
  'content-md5': 'Q2hlY2sgSW50ZWdyaXR5IQ==',
  digest: 'sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=',
  'content-digest': 'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:',
  'repr-digest': 'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:',
};

interface Scene {
  upstream: Running;
  wsUpstream: Running;
  front: Running;
  plain: Running;
  records: LogRecord[];
  /** Every chunk the banner transform read, per request. */
  transformChunks: string[][];
  whenCalls: number;
  /** What the upstream sent as body bytes for the last response of each path. */
  sent: Map<string, Buffer>;
  /** The request ids and closes the upstream saw for /slow. */
  slowClosed: Array<Promise<boolean>>;
  transformClosed: Array<Promise<void>>;
}

/** Resolved each time the banner transform reads a chunk: the upstream sends the rest of a page only then. */
let chunkSeen: () => void = () => {};

async function startUpstream(scene: Pick<Scene, 'sent' | 'slowClosed'>): Promise<Running> {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url!, 'http://upstream');
    const coding = (url.searchParams.get('coding') ?? 'identity') as Coding;
    const encoded = coding === 'identity' ? {} : { 'content-encoding': coding };
    switch (url.pathname) {
      case '/page': {
        const [a, b] = await encodeInTwo(coding, PREFIX_HTML, REST_HTML);
        scene.sent.set(url.pathname, Buffer.concat([a, b]));
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': a.length + b.length, vary: 'Accept-Encoding', 'accept-ranges': 'bytes', 'x-app': 'kept', ...encoded, ...VALIDATORS });
        if (req.method === 'HEAD') return res.end();
        res.write(a);
        // Through the banner transform (app.localhost), the rest only once it has read the first part (or a second has passed).
        if (req.headers.host === 'app.localhost') await Promise.race([new Promise<void>((resolve) => (chunkSeen = resolve)), sleep(1000)]);
        // In tiny pieces: the transform sees them as they come.
        for (let i = 0; i < b.length; i += 7) {
          res.write(b.subarray(i, i + 7));
          await sleep(1);
        }
        return res.end();
      }
      case '/data': {
        const body = coding === 'gzip' ? zlib.gzipSync(JSON_BODY) : Buffer.from(JSON_BODY);
        scene.sent.set(url.pathname, body);
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length, ETag: '"json-1"', ...encoded, 'X-Mixed-Case': 'Value' });
        return res.end(body);
      }
      case '/odd': {
        // A coding the proxy cannot decode, or two stacked: passed on untouched.
        const body = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x01, 0x02, 0x03]);
        scene.sent.set(url.pathname, body);
        res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': url.searchParams.get('as')!, 'content-length': body.length, etag: '"odd"' });
        return res.end(body);
      }
      case '/transfer-coded': {
        // gzip as a transfer-coding: Node's client leaves it on the bytes, so no transform can read them.
        const body = zlib.gzipSync(HTML);
        scene.sent.set(url.pathname, body);
        res.writeHead(200, { 'content-type': 'text/html', 'transfer-encoding': 'gzip, chunked' });
        return res.end(body);
      }
      case '/empty':
        res.writeHead(201, 'Made', { 'content-type': 'text/html', 'x-app': 'kept', 'content-length': 0 });
        return res.end();
      case '/no-content':
        res.writeHead(204, { etag: '"nc"', 'content-type': 'text/html' });
        return res.end();
      case '/not-modified':
        res.writeHead(304, { etag: '"nm"', 'content-type': 'text/html' });
        return res.end();
      case '/partial': {
        const body = zlib.gzipSync(HTML).subarray(10, 30);
        scene.sent.set(url.pathname, body);
        res.writeHead(206, { 'content-type': 'text/html', 'content-encoding': 'gzip', 'content-range': 'bytes 10-29/200', 'content-length': body.length, etag: '"p"' });
        return res.end(body);
      }
      case '/broken':
        res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'gzip' });
        return res.end(Buffer.from('this is not gzip at all, whatever the header says'));
      case '/broken-midway': {
        // Valid gzip for a first part (the client gets its head and that part), then bytes no inflater takes.
        res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'gzip' });
        res.write(zlib.gzipSync('<html><head></head><body>first part', { finishFlush: zlib.constants.Z_SYNC_FLUSH }));
        await sleep(100);
        return res.end(Buffer.alloc(16, 0xff));
      }
      case '/two-parts': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('part one;');
        await sleep(100);
        res.write('part two;');
        await sleep(100);
        return res.end('part three');
      }
      case '/slow': {
        // Up to 5 s of text unless the proxy hangs up first.
        scene.slowClosed.push(new Promise((resolve) => res.once('close', () => resolve(res.writableFinished))));
        res.writeHead(200, { 'content-type': 'text/plain' });
        for (let i = 0; i < 250 && !res.destroyed; i++) {
          res.write(`line ${i}\n`);
          await sleep(20);
        }
        return res.end();
      }
      case '/quick': {
        // The whole body at once: only the transform is slow.
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('x'.repeat(64 * 1024));
      }
      case '/endless': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = Buffer.alloc(64 * 1024, 'a');
        let written = 0;
        const pump = () => {
          while (written < 100 * 1024 * 1024 && !res.destroyed) {
            written += chunk.length;
            endlessWritten = written;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        return pump();
      }
      default:
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<html><head></head><body>default</body></html>');
    }
  });
  return listen(server);
}

let endlessWritten = 0;

function sceneOptions(scene: Scene): Omit<ProxyOptions, 'routes' | 'logger'> {
  return {
    transformResponse: {
      when: ({ headers }) => String(headers['content-type']).startsWith('text/html'),
      transform: () => {
        const chunks: string[] = [];
        scene.transformChunks.push(chunks);
        return injectAfterHead(BANNER, (chunk) => {
          chunks.push(chunk);
          chunkSeen();
        });
      },
    },
  };
}

function routesFor(scene: Scene): ProxyOptions['routes'] {
  const target = scene.upstream.url;
  return {
    'app.localhost': target,
    // Its own rule replaces the proxy-wide one.
    'own.localhost': { target, transformResponse: { when: () => true, transform: upperCase } },
    'off.localhost': { target, transformResponse: false },
    'all.localhost': {
      target,
      transformResponse: {
        when: () => {
          scene.whenCalls++;
          return true;
        },
        transform: upperCase,
      },
    },
    'when-throws.localhost': { target, transformResponse: { when: () => { throw new Error('when broke'); }, transform: upperCase } },
    'when-async.localhost': { target, transformResponse: { when: (async () => false) as unknown as () => boolean, transform: upperCase } },
    'factory-throws.localhost': { target, transformResponse: { when: () => true, transform: () => { throw new Error('factory broke'); } } },
    'not-a-stream.localhost': { target, transformResponse: { when: () => true, transform: (() => 'nope') as unknown as () => Transform } },
    'first-chunk-throws.localhost': {
      target,
      transformResponse: {
        when: () => true,
        transform: () =>
          new Transform({
            transform() {
              throw new Error('first chunk broke');
            },
          }),
      },
    },
    'midway.localhost': {
      target,
      transformResponse: {
        when: () => true,
        transform: () => {
          let seen = 0;
          return new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              if (++seen === 2) return callback(new Error('second chunk broke'));
              callback(null, chunk);
            },
          });
        },
      },
    },
    'slow-transform.localhost': {
      target,
      transformResponse: {
        when: () => true,
        transform: () => {
          // Slow, and 64 times as much out as in: the upstream is long done while it still has output for the client.
          const transform = new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              setTimeout(() => {
                for (let i = 0; i < 64; i++) this.push(chunk);
                callback();
              }, 20);
            },
          });
          scene.transformClosed.push(new Promise((resolve) => transform.once('close', () => resolve())));
          return transform;
        },
      },
    },
    'ws.localhost': { target: scene.wsUpstream.url, transformResponse: { when: () => true, transform: upperCase } },
  };
}

describe.each(EXPRESS_VERSIONS)('transformResponse (%s)', (_name, express) => {
  const scene = { transformChunks: [], whenCalls: 0, sent: new Map(), slowClosed: [], transformClosed: [] } as unknown as Scene;
  let wss: WebSocketServer;
  let proxy: ReturnType<typeof createProxy>;
  let plainProxy: ReturnType<typeof createProxy>;

  beforeAll(async () => {
    scene.upstream = await startUpstream(scene);
    const wsServer = http.createServer((_req, res) => res.end('ws only'));
    wss = new WebSocketServer({ server: wsServer });
    wss.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo ${String(data)}`)));
    scene.wsUpstream = await listen(wsServer);
    const { logger, records } = captureLogs('debug');
    scene.records = records;
    proxy = createProxy({ routes: routesFor(scene), logger, ...sceneOptions(scene) });
    const app = express();
    app.use(PREFIX, proxy);
    const server = http.createServer(app);
    server.on('upgrade', proxy.upgradeThrough(app, PREFIX));
    scene.front = await listen(server);
    // The same app without transformResponse: "as today".
    plainProxy = createProxy({ routes: { 'app.localhost': scene.upstream.url }, logger: false });
    const plainApp = express();
    plainApp.use(PREFIX, plainProxy);
    scene.plain = await listen(http.createServer(plainApp));
  });

  afterAll(async () => {
    await Promise.all([proxy.close(), plainProxy.close()]);
    wss.close();
    await Promise.all([scene.front.close(), scene.plain.close(), scene.upstream.close(), scene.wsUpstream.close()]);
  });

  const recordsFrom = (from: number, code: string) => scene.records.slice(from).filter((record) => record.code === code);

  it.each(CODINGS)('injects a banner after <head> of a %s-encoded HTML page split in tiny chunks, sent decoded with no length, coding or validators', async (coding) => {
    const before = scene.transformChunks.length;
    const got = await get(scene.front.port, 'app.localhost', `${PREFIX}/page?coding=${coding}`);
    expect(got.status).toBe(200);
    expect(got.body.toString('utf8')).toBe(WITH_BANNER);
    for (const name of ['content-encoding', 'content-length', 'etag', 'content-md5', 'digest', 'content-digest', 'repr-digest', 'accept-ranges']) {
      expect(got.headers[name]).toBeUndefined();
    }
    expect(got.headers['transfer-encoding']).toBe('chunked');
    expect(got.headers).toMatchObject({ 'content-type': 'text/html; charset=utf-8', vary: 'Accept-Encoding', 'x-app': 'kept' });
    // The transform read `<head>` split across chunks: the first part ended in the middle of the tag.
    const chunks = scene.transformChunks[before]!;
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.some((chunk) => chunk.endsWith('<he'))).toBe(true);
    expect(chunks.some((chunk) => chunk.includes('<head>'))).toBe(false);
  });

  it('sends an HTTP/1.0 client the transformed page close-delimited', async () => {
    const raw = await openRaw(scene.front.port);
    await raw.write(`GET ${PREFIX}/page?coding=gzip HTTP/1.0\r\nHost: app.localhost\r\n\r\n`);
    expect(await raw.waitForClose(3000)).toBe(true);
    const [response] = parseResponses(raw.received(), true).responses;
    expect(response!.status).toBe(200);
    expect(response!.bodyToClose).toBe(true);
    expect(response!.headers['content-length']).toBeUndefined();
    expect(response!.headers['transfer-encoding']).toBeUndefined();
    expect(response!.body.toString('utf8')).toBe(WITH_BANNER);
  });

  it('passes a response `when` rejects byte for byte, with every header, exactly as a proxy without transformResponse does', async () => {
    const callsBefore = scene.transformChunks.length;
    const got = await get(scene.front.port, 'app.localhost', `${PREFIX}/data?coding=gzip`);
    const today = await get(scene.plain.port, 'app.localhost', `${PREFIX}/data?coding=gzip`);
    expect(got.body.equals(scene.sent.get('/data')!)).toBe(true);
    expect(got.body.equals(today.body)).toBe(true);
    expect(fieldLines(got.rawHeaders)).toEqual(fieldLines(today.rawHeaders));
    expect(fieldLines(got.rawHeaders)).toEqual(
      expect.arrayContaining([
        ['Content-Length', String(scene.sent.get('/data')!.length)],
        ['ETag', '"json-1"'],
        ['content-encoding', 'gzip'],
        ['X-Mixed-Case', 'Value'],
      ]),
    );
    expect(scene.transformChunks.length).toBe(callsBefore);
  });

  it('leaves a route with transformResponse: false alone, and a route with its own rule uses that one instead of the proxy-wide one', async () => {
    const off = await get(scene.front.port, 'off.localhost', `${PREFIX}/page?coding=gzip`);
    expect(off.body.equals(scene.sent.get('/page')!)).toBe(true);
    expect(off.headers).toMatchObject({ 'content-encoding': 'gzip', etag: VALIDATORS.etag, 'content-length': String(off.body.length) });
    const own = await get(scene.front.port, 'own.localhost', `${PREFIX}/page?coding=br`);
    expect(own.body.toString('latin1')).toBe(Buffer.from(HTML).toString('latin1').toUpperCase());
    expect(own.body.toString('utf8')).not.toContain(BANNER);
  });

  it('never asks about (nor transforms) HEAD, 204, 304 or 206; a 200 on the same route is transformed', async () => {
    const callsBefore = scene.whenCalls;
    const head = await get(scene.front.port, 'all.localhost', `${PREFIX}/page?coding=gzip`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers).toMatchObject({ 'content-encoding': 'gzip', etag: VALIDATORS.etag, 'content-md5': VALIDATORS['content-md5'] });
    expect(head.headers['content-length']).toBeDefined();
    const noContent = await get(scene.front.port, 'all.localhost', `${PREFIX}/no-content`);
    expect(noContent).toMatchObject({ status: 204, headers: { etag: '"nc"' } });
    const notModified = await get(scene.front.port, 'all.localhost', `${PREFIX}/not-modified`, { headers: { 'if-none-match': '"nm"' } });
    expect(notModified).toMatchObject({ status: 304, headers: { etag: '"nm"' } });
    const partial = await get(scene.front.port, 'all.localhost', `${PREFIX}/partial`, { headers: { range: 'bytes=10-29' } });
    expect(partial.status).toBe(206);
    expect(partial.body.equals(scene.sent.get('/partial')!)).toBe(true);
    expect(partial.headers).toMatchObject({ 'content-range': 'bytes 10-29/200', 'content-encoding': 'gzip', etag: '"p"', 'content-length': '20' });
    expect(scene.whenCalls).toBe(callsBefore);

    const whole = await get(scene.front.port, 'all.localhost', `${PREFIX}/page?coding=deflate`);
    expect(whole.body.toString('latin1')).toBe(Buffer.from(HTML).toString('latin1').toUpperCase());
    expect(scene.whenCalls).toBe(callsBefore + 1);
  });

  it.each(['zstd', 'gzip, br', 'compress'])('passes a body encoded as %j untouched: a coding it cannot decode', async (as) => {
    const from = scene.records.length;
    const got = await get(scene.front.port, 'all.localhost', `${PREFIX}/odd?as=${encodeURIComponent(as)}`);
    expect(got.body.equals(scene.sent.get('/odd')!)).toBe(true);
    expect(got.headers).toMatchObject({ 'content-encoding': as, etag: '"odd"', 'content-length': String(got.body.length) });
    expect(scene.records.slice(from)).toEqual(
      expect.arrayContaining([expect.objectContaining({ level: 'debug', message: expect.stringContaining('cannot be decoded'), contentEncoding: as })]),
    );
  });

  it('sends the upstream`s head for a transformed body that turns out empty', async () => {
    const raw = await openRaw(scene.front.port);
    await raw.write(`GET ${PREFIX}/empty HTTP/1.1\r\nHost: all.localhost\r\n\r\n`);
    expect(await raw.waitForResponses(1, 2000)).toBe(true);
    const [response] = raw.responses();
    raw.destroy();
    expect(response!.statusLine).toBe('HTTP/1.1 201 Made');
    expect(response!.headers).toMatchObject({ 'x-app': 'kept', 'transfer-encoding': 'chunked' });
    expect(response!.body.length).toBe(0);
  });

  it('passes a body with a transfer-coding besides chunked untouched', async () => {
    const got = await get(scene.front.port, 'all.localhost', `${PREFIX}/transfer-coded`);
    expect(got.headers['transfer-encoding']).toBe('gzip, chunked');
    expect(got.body.equals(scene.sent.get('/transfer-coded')!)).toBe(true);
  });

  it.each([
    ['when-throws', 'when threw', 'when broke'],
    ['when-async', 'when returned a promise', undefined],
    ['factory-throws', 'transform threw', 'factory broke'],
    ['not-a-stream', 'not a Transform stream', undefined],
    ['first-chunk-throws', 'transform failed', 'first chunk broke'],
  ])('%s: a 502 RESPONSE_TRANSFORM_FAILED before the head, logged at error with the request id', async (host, detail, cause) => {
    const from = scene.records.length;
    const got = await get(scene.front.port, `${host}.localhost`, `${PREFIX}/page?coding=gzip`, { headers: { 'x-request-id': `req-${host}` } });
    expect(got.status).toBe(502);
    expect(got.body.toString()).toBe('Bad Gateway');
    expect(got.headers['proxy-status']).toBe('proxy; error=proxy_internal_error');
    expect(got.headers['content-encoding']).toBeUndefined();
    const [record] = recordsFrom(from, 'RESPONSE_TRANSFORM_FAILED');
    expect(record).toMatchObject({ level: 'error', status: 502, requestId: `req-${host}`, message: expect.stringContaining(detail) });
    if (cause) expect(record!.cause).toMatchObject({ message: cause });
    // The proxy goes on serving.
    expect((await get(scene.front.port, 'app.localhost', `${PREFIX}/page`)).body.toString()).toBe(WITH_BANNER);
  });

  it('answers a body that does not decode as its Content-Encoding with a 502 http_response_content_coding', async () => {
    const from = scene.records.length;
    const got = await get(scene.front.port, 'app.localhost', `${PREFIX}/broken`);
    expect(got.status).toBe(502);
    expect(got.headers['proxy-status']).toBe('proxy; error=http_response_content_coding');
    expect(recordsFrom(from, 'UPSTREAM_PROTOCOL_ERROR')).toEqual([expect.objectContaining({ level: 'warn', status: 502, message: expect.stringContaining('does not decode as gzip') })]);
  });

  /** A raw GET: what the client received, once the proxy closed the connection. */
  async function rawGet(host: string, pathname: string) {
    const raw = await openRaw(scene.front.port);
    await raw.write(`GET ${PREFIX}${pathname} HTTP/1.1\r\nHost: ${host}\r\nX-Request-Id: raw-${host}\r\n\r\n`);
    const closed = await raw.waitForClose(3000);
    return { closed, text: raw.received().toString('latin1'), complete: parseResponses(raw.received(), true).responses };
  }

  it('cuts the response when the transform fails after the head: no terminating chunk, the connection closed, logged at error', async () => {
    const from = scene.records.length;
    const { closed, text, complete } = await rawGet('midway.localhost', '/two-parts');
    expect(closed).toBe(true);
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text).toMatch(/transfer-encoding: chunked/i);
    expect(text).toContain('part one;');
    expect(text).not.toContain('part two;');
    expect(text.endsWith('0\r\n\r\n')).toBe(false);
    expect(complete).toEqual([]);
    expect(recordsFrom(from, 'RESPONSE_TRANSFORM_FAILED')).toEqual([
      expect.objectContaining({ level: 'error', requestId: 'raw-midway.localhost', afterResponseStarted: true, cause: expect.objectContaining({ message: 'second chunk broke' }) }),
    ]);
  });

  it('cuts the response when the body stops decoding after the head, logged as the upstream`s fault', async () => {
    const from = scene.records.length;
    const { closed, text, complete } = await rawGet('app.localhost', '/broken-midway');
    expect(closed).toBe(true);
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text).toContain('first part');
    expect(text.endsWith('0\r\n\r\n')).toBe(false);
    expect(complete).toEqual([]);
    expect(recordsFrom(from, 'UPSTREAM_PROTOCOL_ERROR')).toEqual([
      expect.objectContaining({ level: 'warn', proxyStatus: 'http_response_content_coding', afterResponseStarted: true, requestId: 'raw-app.localhost' }),
    ]);
  });

  it('destroys the upstream request when the client leaves mid-transform', async () => {
    const before = scene.slowClosed.length;
    await new Promise<void>((resolve) => {
      const req = http.get({ port: scene.front.port, host: '127.0.0.1', path: `${PREFIX}/slow`, headers: { host: 'all.localhost' }, agent: false }, (res) => {
        res.once('data', (chunk: Buffer) => {
          expect(chunk.toString()).toMatch(/^LINE 0/);
          req.destroy();
        });
      });
      req.on('error', () => {});
      req.on('close', () => resolve());
    });
    const finished = await Promise.race([scene.slowClosed[before]!, sleep(2000).then(() => 'still open')]);
    expect(finished).toBe(false);
  });

  it('tears the transform down when the client leaves after the upstream is done', async () => {
    const before = scene.transformClosed.length;
    await new Promise<void>((resolve) => {
      const req = http.get({ port: scene.front.port, host: '127.0.0.1', path: `${PREFIX}/quick`, headers: { host: 'slow-transform.localhost' }, agent: false }, (res) => {
        res.once('data', () => req.destroy());
      });
      req.on('error', () => {});
      req.on('close', () => resolve());
    });
    const closed = await Promise.race([scene.transformClosed[before]!.then(() => 'closed'), sleep(2000).then(() => 'still open')]);
    expect(closed).toBe('closed');
  });

  it('holds backpressure: a client that does not read pauses the upstream', async () => {
    endlessWritten = 0;
    const req = http.get({ port: scene.front.port, host: '127.0.0.1', path: `${PREFIX}/endless`, headers: { host: 'all.localhost' }, agent: false }, (res) => res.pause());
    req.on('error', () => {});
    try {
      await sleep(500);
      // Socket buffers on three hops and the pipeline's own hold a few MB; a buffering proxy takes all 100.
      expect(endlessWritten).toBeLessThan(32 * 1024 * 1024);
      const whilePaused = endlessWritten;
      await sleep(200);
      expect(endlessWritten).toBe(whilePaused);
    } finally {
      req.destroy();
    }
  });

  it('proxies a WebSocket on a route with transformResponse, untransformed', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${scene.front.port}${PREFIX}/socket`, { headers: { host: 'ws.localhost' } });
    try {
      await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
      const reply = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send('hello');
      expect(await reply).toBe('echo hello');
    } finally {
      ws.close();
    }
  });
});

describe('transformResponse options', () => {
  const routes = { 'a.localhost': 'http://127.0.0.1:1' };
  const yes = (): boolean => true;
  const ok = { when: yes, transform: upperCase };

  it.each<[unknown, RegExp]>([
    [5, /transformResponse must be false or \{ when/],
    [true, /transformResponse must be false or \{ when/],
    [{ when: yes }, /transformResponse\.transform must be a function; got undefined/],
    [{ when: 'yes', transform: upperCase }, /transformResponse\.when must be a function; got "yes"/],
    [{ ...ok, whn: yes }, /unknown option "transformResponse\.whn"; did you mean "transformResponse\.when"\?/],
  ])('refuses transformResponse: %p', (value, message) => {
    expect(() => createProxy({ routes, logger: false, transformResponse: value as never })).toThrow(ProxyOptionsError);
    expect(() => createProxy({ routes, logger: false, transformResponse: value as never })).toThrow(message);
  });

  it('names the route whose transformResponse is wrong', () => {
    const bad = { 'b.localhost': { target: 'http://127.0.0.1:1', transformResponse: { when: () => true, transform: 'upper' } } };
    expect(() => createProxy({ routes: bad as never, logger: false })).toThrow(/routes\["b\.localhost"\]\.transformResponse\.transform must be a function; got "upper"/);
  });

  it('takes false, and a rule, proxy-wide', () => {
    expect(() => createProxy({ routes, logger: false, transformResponse: false })).not.toThrow();
    expect(() => createProxy({ routes, logger: false, transformResponse: ok })).not.toThrow();
  });
});

describe('a 200 MiB transformed response', () => {
  let child: ChildProcess | undefined;
  let upstream: Running | undefined;

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await upstream?.close();
  });

  it('streams through the proxy (gzip decoded, upper-cased) with its RSS growing by less than 64 MiB', async () => {
    const SIZE = 200 * 1024 * 1024;
    const piece = Buffer.alloc(256 * 1024);
    for (let i = 0; i < piece.length; i++) piece[i] = 0x61 + (i % 26);
    upstream = await listen(
      http.createServer((req: IncomingMessage, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
        const size = req.url!.endsWith('/big') ? SIZE : piece.length;
        const source = Readable.from(
          (function* () {
            for (let sent = 0; sent < size; sent += piece.length) yield piece;
          })(),
        );
        source.pipe(zlib.createGzip({ level: 1 })).pipe(res);
      }),
    );
    let stderr = '';
    // --expose-gc: the child collects before each RSS sample (see the fixture for why).
    child = fork(path.join(import.meta.dirname, 'fixtures/transform/proxy-child.ts'), [upstream.url], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => (stderr += chunk));
    const messages: TransformChildMessage[] = [];
    const next = (type: TransformChildMessage['type']) =>
      new Promise<TransformChildMessage>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${type} from the proxy child: ${stderr}`)), 20_000);
        const check = () => {
          const found = messages.find((message) => message.type === type);
          if (!found) return;
          clearTimeout(timer);
          child!.off('message', onMessage);
          resolve(found);
        };
        const onMessage = (message: TransformChildMessage) => (messages.push(message), check());
        child!.on('message', onMessage);
        check();
      });
    const ready = (await next('ready')) as Extract<TransformChildMessage, { type: 'ready' }>;

    /** Reads the whole response; counts bytes and any lower-case letter left. */
    const read = (pathname: string) =>
      new Promise<{ bytes: number; lowerCase: number; encoding: string | undefined }>((resolve, reject) => {
        http
          .get({ port: ready.port, host: '127.0.0.1', path: pathname, headers: { host: 'big.localhost' }, agent: false }, (res) => {
            let bytes = 0;
            let lowerCase = 0;
            res.on('data', (chunk: Buffer) => {
              bytes += chunk.length;
              if (chunk.indexOf(0x61) !== -1 || chunk.indexOf(0x7a) !== -1) lowerCase++;
            });
            res.on('end', () => resolve({ bytes, lowerCase, encoding: res.headers['content-encoding'] }));
            res.on('error', reject);
          })
          .on('error', reject);
      });

    // Warm: the code paths loaded before the baseline is taken.
    expect(await read(`${PREFIX}/small`)).toEqual({ bytes: piece.length, lowerCase: 0, encoding: undefined });
    child.send({ type: 'watch' });
    await sleep(50);
    expect(await read(`${PREFIX}/big`)).toEqual({ bytes: SIZE, lowerCase: 0, encoding: undefined });
    child.send({ type: 'report' });
    const { baseline, peak } = (await next('rss')) as Extract<TransformChildMessage, { type: 'rss' }>;
    expect((peak - baseline) / 1024 / 1024).toBeLessThan(64);
  }, 60_000);
});
