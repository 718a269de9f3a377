import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..');
// Under the repo, so the package's own dependencies resolve from the repo's
// node_modules by walking up, as they would from an app's; no network.
const CONSUMER = path.join(REPO, 'node_modules', '.cache', 'honest-proxy-pack');
const INSTALLED = path.join(CONSUMER, 'node_modules', 'honest-proxy');
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

/** npm, run by this Node (24) when npm is a script we can find; else the `npm` command itself. */
function npm(): { file: string; args: string[] } {
  const local = path.join(REPO, 'node_modules', 'npm', 'bin', 'npm-cli.js');
  if (existsSync(local)) return { file: process.execPath, args: [local] };
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'npm');
    if (!dir || !existsSync(candidate)) continue;
    const real = realpathSync(candidate);
    return real.endsWith('.js') ? { file: process.execPath, args: [real] } : { file: candidate, args: [] };
  }
  throw new Error('no npm: neither node_modules/npm nor npm on PATH');
}

// One consumer, written once for each module system: a real upstream, the
// proxy in a plain node:http server, one request through it.
const CONSUMER_BODY = `
async function main(resolved, version) {
  const upstream = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end('hello from upstream ' + req.url);
  });
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const proxy = createProxy({ routes: { 'app.localhost': 'http://127.0.0.1:' + upstream.address().port } });
  const front = http.createServer((req, res) => proxy(req, res));
  await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve));
  const reply = await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: front.address().port, path: '/hello', headers: { host: 'app.localhost' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
  });
  const routeFunction = portHostRoutes({ domain: 'localhost', resolve: () => undefined });
  console.log(JSON.stringify({ ...reply, resolved, version, proxyErrorIsError: ProxyError.prototype instanceof Error, routeFunction: typeof routeFunction }));
  await proxy.close();
  for (const server of [front, upstream]) {
    server.closeAllConnections();
    server.close();
  }
}
`;

const CJS = `'use strict';
const http = require('node:http');
const { createProxy, ProxyError, portHostRoutes } = require('honest-proxy');
${CONSUMER_BODY}
main(require.resolve('honest-proxy'), require('honest-proxy/package.json').version).catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
`;

const ESM = `import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { createProxy, ProxyError, portHostRoutes } from 'honest-proxy';
import pkg from 'honest-proxy/package.json' with { type: 'json' };
${CONSUMER_BODY}
await main(fileURLToPath(import.meta.resolve('honest-proxy')), pkg.version);
`;

interface ConsumerReport {
  status: number;
  body: string;
  resolved: string;
  version: string;
  proxyErrorIsError: boolean;
  routeFunction: string;
}

describe('the packed package (npm pack)', () => {
  let packDir: string;
  let files: string[];

  beforeAll(async () => {
    packDir = mkdtempSync(path.join(os.tmpdir(), 'honest-proxy-pack-'));
    const { file, args } = npm();
    // prepack builds dist/ first, so what is packed is what src/ says now.
    const { stdout } = await run(file, [...args, 'pack', '--json', '--pack-destination', packDir], {
      cwd: REPO,
      env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_offline: 'true' },
      maxBuffer: 16 * 1024 * 1024,
    });
    const [packed] = JSON.parse(stdout) as Array<{ filename: string }>;
    const tarball = path.join(packDir, packed!.filename);

    const listing = await run('tar', ['-tzf', tarball]);
    files = listing.stdout
      .split('\n')
      .filter(Boolean)
      .map((entry) => entry.replace(/^package\//, ''));

    rmSync(CONSUMER, { recursive: true, force: true });
    mkdirSync(INSTALLED, { recursive: true });
    await run('tar', ['-xzf', tarball, '-C', INSTALLED, '--strip-components=1']);
    // A package scope of its own, so nothing resolves through the repo's package.json.
    writeFileSync(path.join(CONSUMER, 'package.json'), JSON.stringify({ name: 'honest-proxy-consumer', private: true }));
    writeFileSync(path.join(CONSUMER, 'consumer.cjs'), CJS);
    writeFileSync(path.join(CONSUMER, 'consumer.mjs'), ESM);
  }, 60_000);

  afterAll(() => {
    if (packDir) rmSync(packDir, { recursive: true, force: true });
    rmSync(CONSUMER, { recursive: true, force: true });
  });

  async function consume(script: string): Promise<ConsumerReport> {
    const { stdout } = await run(process.execPath, [path.join(CONSUMER, script)], { cwd: CONSUMER, timeout: 30_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as ConsumerReport;
  }

  it.each(['consumer.cjs', 'consumer.mjs'])(
    '%s loads the packed package and proxies one request through it',
    async (script) => {
      const report = await consume(script);
      expect(report).toEqual({
        status: 200,
        body: 'hello from upstream /hello',
        resolved: path.join(INSTALLED, 'dist', 'index.js'),
        version: VERSION,
        proxyErrorIsError: true,
        routeFunction: 'function',
      });
    },
    60_000,
  );

  it('ships every file its README links to', () => {
    expect(files).toContain('README.md');
    const readme = readFileSync(path.join(INSTALLED, 'README.md'), 'utf8');
    // Markdown links and images whose target is a path in the package, not a URL or an anchor.
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]!).filter((target) => !/^[a-z][a-z0-9+.-]*:|^#/i.test(target));
    expect(targets.length).toBeGreaterThan(0);
    const missing = targets.map((target) => path.posix.normalize(target.split('#')[0]!)).filter((target) => !files.includes(target));
    expect(missing).toEqual([]);
  });

  it('ships its entry points and every file its source maps name', () => {
    expect(files).toEqual(expect.arrayContaining(['package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map']));
    const maps = files.filter((file) => file.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(0);
    const missing: string[] = [];
    for (const map of maps) {
      const { sources, sourceRoot = '' } = JSON.parse(readFileSync(path.join(INSTALLED, map), 'utf8')) as { sources: string[]; sourceRoot?: string };
      expect(sources.length).toBeGreaterThan(0);
      for (const source of sources) {
        const shipped = path.posix.normalize(path.posix.join(path.posix.dirname(map), sourceRoot, source));
        if (!files.includes(shipped)) missing.push(`${map} -> ${shipped}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
