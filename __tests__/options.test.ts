import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express5, { type Request } from 'express';
import { Registry } from 'prom-client';
import request from 'supertest';
import ts from 'typescript';
import { createProxy, DEFAULT_TIMEOUTS, portHostRoutes, ProxyOptionsError, type ProxyOptions } from '../src/index.ts';
import pino from 'pino';
import { adaptLogger } from '../src/logger-adapters.ts';
import { resolveOptions } from '../src/options.ts';
import { PREFIX, startProxyApp, type ProxyApp } from './helpers/apps.ts';
import { captureLogs } from './helpers/logs.ts';
import { closedPort, listen, startUpstream, type Running, type Upstream } from './helpers/servers.ts';

const routes = { 'app.localhost': 'http://127.0.0.1:3000' };

function construct(options: unknown): () => unknown {
  return () => createProxy(options as ProxyOptions);
}

describe('options are checked at construction', () => {
  it('accepts a minimal valid configuration', () => {
    expect(typeof createProxy({ routes })).toBe('function');
  });

  it.each<[string, unknown, RegExp]>([
    ['no options', undefined, /needs an options object/],
    ['no routes', {}, /routes is required/],
    ['routes of the wrong type', { routes: 'http://x' }, /routes must be a record of host -> target, or a function/],
    ['an empty route record', { routes: {} }, /routes must name at least one host/],
    ['a route key that is not a host', { routes: { 'not a host': 'http://127.0.0.1' } }, /routes: "not a host" is not a host name/],
    ['two keys for one host', { routes: { 'A.test': 'http://127.0.0.1', 'a.test.': 'http://127.0.0.1' } }, /names the same host/],
    ['a relative target', { routes: { 'a.test': '/relative' } }, /routes\["a.test"\] must be an absolute http: or https: URL, or unix:\/path\/to\.sock; got "\/relative"/],
    ['a non-http target', { routes: { 'a.test': 'ftp://files' } }, /must be an absolute http: or https: URL/],
    ['a target object without target', { routes: { 'a.test': { url: 'http://x' } } }, /routes\["a.test"\] must be a URL string, a URL, an array of them, or \{ target/],
    ['an unknown option', { routes, timeout: 5 }, /unknown option "timeout"; did you mean "timeouts"\?/],
    ['a bad errorFormat', { routes, errorFormat: 'html' }, /errorFormat must be 'text', 'json' or a function/],
    ['a bad proxyStatus', { routes, proxyStatus: 'has space' }, /proxyStatus must be false or a name/],
    ['a bad onError', { routes, onError: 'throw' }, /onError must be 'respond' or 'next'; got "throw"/],
    ['a negative connect timeout', { routes, timeouts: { connect: -1 } }, /timeouts.connect must be a whole number of milliseconds/],
    ['a fractional response timeout', { routes, timeouts: { response: 1.5 } }, /timeouts.response must be a whole number/],
    ['an unknown timeout', { routes, timeouts: { read: 5 } }, /unknown option "timeouts.read"; known options are timeouts.connect, timeouts.response, timeouts.idle, timeouts.route$/],
    ['a bad request id header', { routes, requestIdHeader: 'x id' }, /requestIdHeader must be false or a header name/],
    ['a non-boolean changeOrigin', { routes, changeOrigin: 'yes' }, /changeOrigin must be true or false/],
  ])('rejects %s', (_case, options, message) => {
    expect(construct(options)).toThrow(message);
  });

  it('throws a ProxyOptionsError with a stable code', () => {
    let thrown: unknown;
    try {
      construct({ routes, onError: 1 })();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect(thrown).toMatchObject({ code: 'ERR_HONEST_PROXY_OPTIONS', message: expect.stringMatching(/^honest-proxy: onError/) });
  });

  it('rejects a bad portHostRoutes configuration', () => {
    expect(() => portHostRoutes({ domain: '', resolve: () => undefined })).toThrow(/domain must be a host name/);
    expect(() => portHostRoutes({ domain: 'localhost' } as never)).toThrow(/resolve must be a function/);
  });
});

describe('rateLimit takes express-rate-limit options, except those that render the 429', () => {
  function thrownBy(options: unknown): unknown {
    try {
      construct(options)();
    } catch (err) {
      return err;
    }
    return undefined;
  }

  it.each<[string, unknown]>([
    ['handler', () => undefined],
    ['message', 'Slow down'],
    ['statusCode', 503],
  ])('refuses rateLimit.%s, saying the proxy renders the 429 itself', (name, value) => {
    const thrown = thrownBy({ routes, rateLimit: { limit: 5, [name]: value } });
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    const { message } = thrown as ProxyOptionsError;
    expect(message).toMatch(new RegExp(`^honest-proxy: rateLimit\\.${name}\\b.* is not accepted: the proxy renders the 429 itself`));
    expect(message).toContain('with Retry-After and the RateLimit headers');
    expect(message).toContain('errorFormat');
  });

  it('accepts every other v8 option at construction', () => {
    const proxy = createProxy({
      routes,
      rateLimit: {
        windowMs: 30_000,
        max: 10,
        ipv6Subnet: 64,
        skip: () => false,
        skipSuccessfulRequests: false,
        skipFailedRequests: true,
        requestWasSuccessful: (_req, res) => res.statusCode < 500,
        retryAfter: 30,
        standardHeaders: 'draft-8',
        legacyHeaders: true,
        identifier: 'per-client',
        requestPropertyName: 'quota',
        validate: { trustProxy: false },
        logger: { error: () => undefined, warn: () => undefined },
        passOnStoreError: false,
      },
    });
    expect(typeof proxy).toBe('function');
  });

  it.each<[string, unknown, RegExp]>([
    ['both passOnStoreError and onStoreError', { limit: 1, passOnStoreError: true, onStoreError: 'deny' }, /rateLimit\.passOnStoreError and rateLimit\.onStoreError .*give only one/],
    ['both limit and max', { limit: 1, max: 2 }, /rateLimit\.limit and rateLimit\.max .*give only one/],
    ['a bad max', { max: -1 }, /rateLimit\.max must be a whole number above 0/],
    ['a non-boolean skipFailedRequests', { limit: 1, skipFailedRequests: 'yes' }, /rateLimit\.skipFailedRequests must be true or false/],
    ['a non-function requestWasSuccessful', { limit: 1, requestWasSuccessful: true }, /rateLimit\.requestWasSuccessful must be a function/],
    ['ipv6Subnet out of range', { limit: 1, ipv6Subnet: 129 }, /rateLimit\.ipv6Subnet must be a prefix length from 1 to 128/],
    ['ipv6Subnet with a keyGenerator', { limit: 1, ipv6Subnet: 64, keyGenerator: () => 'k' }, /rateLimit\.ipv6Subnet applies to the default key only/],
    ['a requestPropertyName the request already has', { limit: 1, requestPropertyName: 'headers' }, /rateLimit\.requestPropertyName must be a property name the request does not already have/],
    ['a bad retryAfter', { limit: 1, retryAfter: -5 }, /rateLimit\.retryAfter must be a whole number of seconds/],
    ['a logger without warn', { limit: 1, logger: { error: () => undefined } }, /rateLimit\.logger must be an object with error/],
    ['a bad validate', { limit: 1, validate: 'all' }, /rateLimit\.validate must be true, false, or a record/],
    ['a draft express-rate-limit does not write', { limit: 1, standardHeaders: 'draft-9' }, /rateLimit\.standardHeaders must be 'draft-6', 'draft-7', 'draft-8', true \(draft-6\) or false; got "draft-9"/],
    ['a non-boolean legacyHeaders', { limit: 1, legacyHeaders: 'yes' }, /rateLimit\.legacyHeaders must be true or false/],
    ['both legacyHeaders and its older name headers', { limit: 1, legacyHeaders: true, headers: false }, /rateLimit\.legacyHeaders and rateLimit\.headers are one option .*give only one/],
  ])('rejects %s', (_case, rateLimit, message) => {
    const thrown = thrownBy({ routes, rateLimit });
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect((thrown as Error).message).toMatch(message);
  });
});

describe('portHostRoutes reports a bad configuration as a ProxyOptionsError', () => {
  it.each<[string, unknown, RegExp]>([
    ['an empty domain', { domain: '', resolve: () => undefined }, /^honest-proxy: portHostRoutes: domain must be a host name/],
    ['no resolve', { domain: 'localhost' }, /^honest-proxy: portHostRoutes: resolve must be a function/],
  ])('%s', (_case, options, message) => {
    let thrown: unknown;
    try {
      portHostRoutes(options as never);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect(thrown).toMatchObject({ code: 'ERR_HONEST_PROXY_OPTIONS', name: 'ProxyOptionsError', message: expect.stringMatching(message) });
  });
});

describe('an unknown option names the closest known one', () => {
  function messageOf(options: unknown): string {
    try {
      construct(options)();
    } catch (err) {
      expect(err).toBeInstanceOf(ProxyOptionsError);
      return (err as ProxyOptionsError).message;
    }
    throw new Error('no error thrown');
  }

  it.each<[string, unknown, string]>([
    ['a wrong case at the top level', { routes, bodylimit: '1mb' }, 'unknown option "bodylimit"; did you mean "bodyLimit"?'],
    ['a typo at the top level', { routes, trustProxi: true }, 'unknown option "trustProxi"; did you mean "trustProxy"?'],
    ['a wrong case in rateLimit', { routes, rateLimit: { limit: 1, windowMS: 1000 } }, 'unknown option "rateLimit.windowMS"; did you mean "rateLimit.windowMs"?'],
    ['a typo in rateLimit', { routes, rateLimit: { limit: 1, standardHeader: 'draft-8' } }, 'unknown option "rateLimit.standardHeader"; did you mean "rateLimit.standardHeaders"?'],
    ['a typo in timeouts', { routes, timeouts: { conect: 1000 } }, 'unknown option "timeouts.conect"; did you mean "timeouts.connect"?'],
    ['a typo in passiveHealth', { routes, passiveHealth: { maxFail: 2 } }, 'unknown option "passiveHealth.maxFail"; did you mean "passiveHealth.maxFails"?'],
    ['a typo in agent', { routes, agent: { htps: new http.Agent() } }, 'unknown option "agent.htps"; did you mean "agent.https"?'],
    ['a typo in metrics', { routes, metrics: { registry: new Registry(), registy: 1 } }, 'unknown option "metrics.registy"; did you mean "metrics.registry"?'],
  ])('%s', (_case, options, message) => {
    expect(messageOf(options)).toBe(`honest-proxy: ${message}`);
  });

  it('lists the known names, in the same shape, when none is close', () => {
    // Every option, named as it is spelled; the list grows with the options.
    expect(messageOf({ routes, zzz: 1 })).toMatch(/^honest-proxy: unknown option "zzz"; known options are routes, logger, errorFormat, proxyStatus, (\w+, )+passiveHealth, metrics(, \w+)*$/);
    expect(messageOf({ routes, passiveHealth: { retries: 2 } })).toBe('honest-proxy: unknown option "passiveHealth.retries"; known options are passiveHealth.maxFails, passiveHealth.failTimeout');
  });

  it('describes timeouts with every timeout there is, from the one list of defaults', () => {
    expect(messageOf({ routes, timeouts: 5000 })).toBe(`honest-proxy: timeouts must be an object { ${Object.keys(DEFAULT_TIMEOUTS).join(', ')} }; got 5000`);
    expect(messageOf({ routes, timeouts: 5000 })).toContain('idle');
  });
});

describe('portHostRoutes passed without calling it', () => {
  it('is refused at createProxy, saying to call it', () => {
    let thrown: unknown;
    try {
      construct({ routes: portHostRoutes })();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProxyOptionsError);
    expect((thrown as Error).message).toBe('honest-proxy: routes: portHostRoutes must be called with its options: routes: portHostRoutes({ domain, resolve })');
  });

  it('still accepts any other route function', () => {
    expect(typeof createProxy({ routes: () => undefined })).toBe('function');
  });
});

describe("portHostRoutes' resolve takes the app's request type", () => {
  // What an auth middleware adds to Express's request (passport's req.user, say).
  interface AppRequest extends Request {
    user?: { sandbox: string };
  }
  let upstream: Upstream;
  let app: Running;

  beforeAll(async () => {
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const express = express5();
    express.use((req, _res, next) => {
      (req as AppRequest).user = { sandbox: 'demo' };
      next();
    });
    // Type-checked by the __tests__ typecheck: `req: AppRequest` and `req.user` must compile.
    const routes = portHostRoutes({ domain: 'localhost', resolve: (id, _port, req: AppRequest) => (req.user?.sandbox === id ? upstream.url : undefined) });
    express.use('/preview', createProxy({ routes, logger: false }));
    app = await listen(http.createServer(express));
  });
  afterAll(async () => {
    await Promise.all([app, upstream].map((s) => s.close()));
  });

  it("routes by what the app's middleware put on the request", async () => {
    expect((await request(app.url).get('/preview/').set('Host', '3000-demo.localhost')).status).toBe(200);
    expect((await request(app.url).get('/preview/').set('Host', '3000-other.localhost')).status).toBe(404);
  });
});

describe('rateLimit asks for limit in its type', () => {
  // Compiled by the __tests__ typecheck, never called.
  function typeLevel(): void {
    createProxy({ routes, rateLimit: { windowMs: 60_000, limit: 100 } });
    createProxy({ routes, rateLimit: { windowMs: 60_000, max: 100 } });
    // @ts-expect-error a count is required: limit (or its older name max)
    createProxy({ routes, rateLimit: { windowMs: 60_000 } });
    // @ts-expect-error limit and max are one option
    createProxy({ routes, rateLimit: { limit: 1, max: 1 } });
  }
  void typeLevel;

  it("reports options without a count as a missing 'limit', not 'max'", () => {
    const messages = diagnosticsOf(`
      import type { ProxyOptions } from '../src/index.ts';
      export const options: ProxyOptions = { routes: { 'a.test': 'http://127.0.0.1' }, rateLimit: { windowMs: 60_000 } };
    `);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain("Property 'limit' is missing");
    expect(messages[0]).not.toContain("'max' is missing");
  });
});

/** The compiler's messages for `code`, as if it were a file in __tests__, with the tests' own tsconfig. */
function diagnosticsOf(code: string): string[] {
  const testsDir = path.dirname(fileURLToPath(import.meta.url));
  const { options } = ts.getParsedCommandLineOfConfigFile(path.join(testsDir, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined })!;
  // Never written to disk: other work in this tree may be type-checking meanwhile.
  const fileName = path.join(testsDir, '__virtual-type-check__.ts');
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) => (name === fileName ? ts.createSourceFile(name, code, language) : getSourceFile(name, language, ...rest));
  host.fileExists = (name) => name === fileName || fileExists(name);
  host.readFile = (name) => (name === fileName ? code : readFile(name));
  const program = ts.createProgram([fileName], { ...options, noEmit: true }, host);
  return ts.getPreEmitDiagnostics(program, program.getSourceFile(fileName)).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

describe('logger takes winston, any object with error/warn/info/debug, or false', () => {
  const apps: Running[] = [];
  afterAll(async () => {
    await Promise.all(apps.map((s) => s.close()));
  });

  /** A proxy whose one route refuses connections (a 502, logged at warn); any other host is a 404 (debug). */
  async function proxyLoggingTo(logger: unknown): Promise<ProxyApp> {
    const app = await startProxyApp(express5, { routes: { 'down.localhost': `http://127.0.0.1:${await closedPort()}` }, logger } as ProxyOptions);
    apps.push(app);
    await request(app.server).get(`${PREFIX}/`).set('Host', 'down.localhost').expect(502);
    await request(app.server).get(`${PREFIX}/`).set('Host', 'nobody.localhost').expect(404);
    return app;
  }

  it('uses a winston logger as it is, with nothing in between', () => {
    const { logger } = captureLogs();
    expect(adaptLogger(logger)).toBe(logger);
  });

  it('calls an object with the four methods as console is called: message, then fields; every level', async () => {
    const calls: Array<[string, ...unknown[]]> = [];
    const record =
      (level: string) =>
      (...args: unknown[]) =>
        calls.push([level, ...args]);
    await proxyLoggingTo({ error: record('error'), warn: record('warn'), info: record('info'), debug: record('debug') });
    expect(calls).toContainEqual(['warn', expect.any(String), expect.objectContaining({ code: 'UPSTREAM_UNREACHABLE', status: 502, host: 'down.localhost' })]);
    expect(calls).toContainEqual(['debug', expect.any(String), expect.objectContaining({ code: 'ROUTE_NOT_FOUND', status: 404 })]);
  });

  it('accepts console', () => {
    expect(typeof createProxy({ routes, logger: console })).toBe('function');
  });

  it.each(['info', 'debug'])('calls pino as pino is called: fields first, then the message; at its own level (%s)', async (level) => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    await proxyLoggingTo(logger);
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, code: 'UPSTREAM_UNREACHABLE', status: 502, host: 'down.localhost', msg: expect.any(String) }));
    const notFound = lines.filter((line) => line['code'] === 'ROUTE_NOT_FOUND');
    expect(notFound).toHaveLength(level === 'debug' ? 1 : 0);
  });

  it('logs nothing with false, and says no to every level before a record is built', async () => {
    const silent = resolveOptions({ routes, logger: false }).logger!;
    expect(['error', 'warn', 'info', 'debug'].map((level) => silent.isLevelEnabled(level as 'info'))).toEqual([false, false, false, false]);
    await proxyLoggingTo(false);
  });

  it.each<[string, unknown]>([
    ['a string', 'stderr'],
    ['true', true],
    ['null', null],
    ['an object with log alone', { log: () => undefined }],
    ['an object without info and debug', { error: () => undefined, warn: () => undefined }],
  ])('refuses %s, naming what it accepts', (_case, logger) => {
    expect(construct({ routes, logger })).toThrow(
      /^honest-proxy: logger must be a winston Logger, an object with error, warn, info and debug methods \(console, pino\), or false for none; got /,
    );
  });
});
