import type { IncomingMessage } from 'node:http';
import { pipeline, Writable, type Duplex, type Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { ResponseTransformError, UpstreamProtocolError, type ProxyError } from '../errors.ts';
import { requestFields, type Logger } from '../logging.ts';
import { isChunkedOnly, withoutFields } from './head-lines.ts';
import type { RelayContext } from './response.ts';
import type { ResponseTransformContext, TransformRule } from './transform-options.ts';

/**
 * Streamed response transforms (`transformResponse`): the upstream's body,
 * decoded, through the app's Transform, to the client, one chunk at a time
 * and at the pace of the slowest of the three. Nothing is buffered whole.
 */

/** Created once per proxy and handed to the relay: the proxy-wide rule, and where to log. */
export interface ResponseTransforms {
  wide: TransformRule | undefined;
  logger: Logger;
}

// No body to transform (HEAD, 204, 304) or one a transform would corrupt:
// 206 carries a byte range of the representation, not the representation. 205
// must have no content at all (RFC 9110 15.3.6). 1xx and 101 never reach the relay.
const UNTOUCHED_STATUS = new Set([204, 205, 206, 304]);

// Whatever vouches for the upstream's exact bytes, or frames them: false once
// the body is rewritten. ETag too: no cache may keep a validator for bytes it
// never got (an If-None-Match with it would get a 304 for the upstream's
// bytes). Accept-Ranges: ranges of the upstream's bytes are not ranges of these.
const DROPPED_FIELDS = new Set(['content-length', 'content-encoding', 'etag', 'content-md5', 'digest', 'content-digest', 'repr-digest', 'accept-ranges']);

const DECODERS: Readonly<Record<string, () => Transform>> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};

type Decoding = { coding: string | undefined; decoder: (() => Transform) | undefined };

/**
 * How to decode the body, or undefined when it cannot be: a coding we do not
 * know (zstd, compress), codings stacked (`gzip, br`), or a transfer-coding
 * besides chunked that Node's client leaves on the bytes.
 */
function decodingOf(proxyRes: IncomingMessage): Decoding | undefined {
  const transferCoding = proxyRes.headers['transfer-encoding'];
  if (transferCoding !== undefined && !isChunkedOnly(transferCoding)) return undefined;
  const codings = (proxyRes.headers['content-encoding'] ?? '')
    .toLowerCase()
    .split(',')
    .map((coding) => coding.trim())
    .filter((coding) => coding !== '' && coding !== 'identity');
  if (codings.length === 0) return { coding: undefined, decoder: undefined };
  const decoder = codings.length === 1 ? DECODERS[codings[0]!] : undefined;
  return decoder && { coding: codings[0], decoder };
}

function isStream(value: unknown): value is Duplex {
  const stream = value as Partial<Duplex> | null;
  return typeof stream?.pipe === 'function' && typeof stream.write === 'function' && typeof stream.end === 'function' && typeof stream.on === 'function';
}

function isThenable(value: unknown): boolean {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

// Errors one stream of a pipeline gets because another one closed: never that stream's own fault.
function isPrematureClose(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'ERR_STREAM_PREMATURE_CLOSE';
}

export interface TransformRelay {
  /** The relay's head for the client, as field lines. */
  lines: readonly string[];
  eventStream: boolean;
  /** Writes the head (false when the exchange already has its answer). */
  writeHead: (lines: readonly string[]) => boolean;
}

/**
 * Transforms this response if `rule` wants it; returns false to leave it to
 * the relay, untouched. A failure of the app's functions or of the decoder
 * follows the relay's rule: before the head is written, a 502 (the upstream
 * connection is dropped with the rest of its body); after, an abort.
 */
export function relayTransformed(rule: TransformRule, proxyRes: IncomingMessage, context: RelayContext, relay: TransformRelay): boolean {
  const { req, res, exchange, proxyReq } = context;
  const status = proxyRes.statusCode!;
  if (req.method === 'HEAD' || UNTOUCHED_STATUS.has(status)) return false;

  const report = (error: ProxyError) => {
    if (exchange.failed) return;
    // A response the upstream completed is no excuse here (failure.ts lets bytes after a complete response go).
    exchange.upstreamResponse = undefined;
    proxyReq.destroy();
    context.fail(error);
  };
  const transformFailed = (what: string, cause: unknown) => report(new ResponseTransformError(`${rule.where}.${what}`, { cause }));

  const transformContext: ResponseTransformContext<IncomingMessage> = { status, headers: proxyRes.headers, req };
  let chosen: unknown;
  try {
    chosen = rule.when(transformContext);
  } catch (err) {
    transformFailed('when threw', err);
    return true;
  }
  // A promise would be truthy: every response transformed, whatever it resolves to.
  if (isThenable(chosen)) {
    transformFailed('when returned a promise; it must decide synchronously', undefined);
    return true;
  }
  if (!chosen) return false;

  const decoding = decodingOf(proxyRes);
  if (!decoding) {
    const { logger } = context.transforms;
    if (logger.isLevelEnabled('debug')) {
      logger.debug('response not transformed: its coding cannot be decoded; passed on untouched', {
        ...requestFields(req, exchange),
        contentEncoding: proxyRes.headers['content-encoding'],
        transferEncoding: proxyRes.headers['transfer-encoding'],
      });
    }
    return false;
  }

  let transform: unknown;
  try {
    transform = rule.transform(transformContext);
  } catch (err) {
    transformFailed('transform threw', err);
    return true;
  }
  if (!isStream(transform)) {
    transformFailed(`transform returned ${transform === null ? 'null' : typeof transform}, not a Transform stream`, undefined);
    return true;
  }
  streamTransformed(proxyRes, decoding, transform, context, relay, report, transformFailed);
  return true;
}

function streamTransformed(
  proxyRes: IncomingMessage,
  { coding, decoder: createDecoder }: Decoding,
  transform: Duplex,
  context: RelayContext,
  relay: TransformRelay,
  report: (error: ProxyError) => void,
  transformFailed: (what: string, cause: unknown) => void,
): void {
  const { res, exchange } = context;
  // The client's head for a transformed body: the relay's, less what described the upstream's bytes.
  const head = withoutFields(relay.lines, DROPPED_FIELDS);
  const flush = relay.eventStream ? (res as { flush?: () => void }).flush : undefined;
  // An event stream's client needs its head at once, as on the relay's own path.
  if (relay.eventStream) {
    if (!relay.writeHead(head)) return;
    res.flushHeaders();
  }

  // The client's side of the pipeline. res itself is no stage of it: pipeline
  // destroys every stage on an error, and before the head a failure is a 502
  // on that very response. objectMode: whatever the transform pushes reaches
  // write(), where a chunk that is not bytes is the transform's error.
  const toClient = new Writable({
    objectMode: true,
    write(chunk, _encoding, done) {
      if (!exchange.clientHeadWritten && !relay.writeHead(head)) return done();
      let flowing: boolean;
      try {
        flowing = res.write(chunk);
      } catch (err) {
        transformFailed('transform pushed a chunk that is not bytes', err);
        return done();
      }
      if (typeof flush === 'function') flush.call(res);
      // The client's pace: until it drains, the transform, the decoder and the upstream wait.
      if (flowing) done();
      else res.once('drain', () => done());
    },
    final(done) {
      if (exchange.clientHeadWritten || relay.writeHead(head)) res.end();
      done();
    },
  });

  // Another stage's end reaching this one: a client that left, or an upstream
  // that died first, which the relay reports as on its own path.
  const foreign = (err: unknown) => isPrematureClose(err) || err === proxyRes.errored;
  // Listeners before pipeline's own: the stream that fails first is told
  // first, before pipeline destroys the others with its error.
  const decoder = createDecoder?.();
  // `on`, not `once`: a stream of the app's may emit more than one error, and an unheard one would crash the process.
  decoder?.on('error', (err) => {
    if (foreign(err)) return;
    report(new UpstreamProtocolError(`response body does not decode as ${coding}`, { proxyStatus: 'http_response_content_coding', cause: err }));
  });
  transform.on('error', (err) => {
    if (foreign(err)) return;
    transformFailed('transform failed', err);
  });
  transform.once('close', () => {
    if (transform.readableEnded || exchange.failed || res.destroyed || proxyRes.errored) return;
    transformFailed('transform closed before its end', undefined);
  });
  // A client that leaves: the pipeline is torn down (the engine destroys the upstream request).
  res.once('close', () => {
    if (!res.writableFinished) toClient.destroy();
  });

  // Every failure is reported by the listeners above or by the relay.
  const done = () => {};
  if (decoder) pipeline(proxyRes, decoder, transform, toClient, done);
  else pipeline(proxyRes, transform, toClient, done);
}
