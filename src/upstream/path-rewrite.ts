import type { IncomingMessage } from 'node:http';
import { PathRewriteError, ProxyError } from '../errors.ts';
import { fail, isRecord, show } from '../option-checks.ts';
import type { ProxyRequest } from '../routes/table.ts';

/**
 * `pathRewrite`: the request-target the upstream gets, from the one the
 * client sent (the mount already stripped, query included), before the
 * target's own path is joined. A function, or a record of path prefixes to
 * replacements.
 */
// The method form keeps the parameter bivariant, as for requestHeaders.set.
export type PathRewriteFunction<Req extends IncomingMessage = ProxyRequest> = {
  rewrite(path: string, req: Req): string;
}['rewrite'];

export type PathRewriteOption<Req extends IncomingMessage = ProxyRequest> = Readonly<Record<string, string>> | PathRewriteFunction<Req>;

/** Compiled: the new request-target, or a PathRewriteError. */
export type PathRewrite = (path: string, req: IncomingMessage) => string;

/**
 * A prefix matches whole segments: `/api` takes `/api`, `/api/x` and
 * `/api?q`, never `/apiary`. Longest prefix first; what is left after the
 * replacement keeps its leading `/` (`{ '/api': '' }` sends `/api/x` as `/x`,
 * and `/api` as `/`).
 */
function prefixRewrite(record: Readonly<Record<string, string>>, where: string): PathRewrite {
  const rules = Object.entries(record).map(([prefix, replacement]) => {
    const at = `${where}[${JSON.stringify(prefix)}]`;
    if (!prefix.startsWith('/')) fail(`${where}: the prefix ${JSON.stringify(prefix)} must start with /`);
    if (typeof replacement !== 'string' || (replacement !== '' && !replacement.startsWith('/'))) {
      fail(`${at} must be a path starting with /, or '' to drop the prefix; got ${show(replacement)}`);
    }
    const bare = prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    return { prefix: bare, replacement: replacement.endsWith('/') && replacement.length > 1 ? replacement.slice(0, -1) : replacement };
  });
  if (rules.length === 0) fail(`${where} must name at least one prefix`);
  rules.sort((a, b) => b.prefix.length - a.prefix.length);
  return (path) => {
    for (const { prefix, replacement } of rules) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix === '/' ? 0 : prefix.length);
      if (prefix !== '/' && rest !== '' && rest[0] !== '/' && rest[0] !== '?') continue;
      const joined = replacement + rest;
      return joined.startsWith('/') ? joined : `/${joined}`;
    }
    return path;
  };
}

function functionRewrite(rewrite: PathRewriteFunction<IncomingMessage>, where: string): PathRewrite {
  return (path, req) => {
    let result: unknown;
    try {
      result = rewrite(path, req);
    } catch (err) {
      throw err instanceof ProxyError ? err : new PathRewriteError(`${where} threw`, { cause: err });
    }
    // Origin-form only: anything else would let a route send the request to another authority, or nowhere.
    if (typeof result !== 'string' || !result.startsWith('/') || result.startsWith('//') || /[\s\x00-\x1f\x7f]/.test(result)) {
      throw new PathRewriteError(`${where} returned ${typeof result === 'string' ? JSON.stringify(result.slice(0, 200)) : show(result)}, not a path starting with /`);
    }
    return result;
  };
}

export function compilePathRewrite(value: unknown, where: string): PathRewrite | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'function') return functionRewrite(value as PathRewriteFunction<IncomingMessage>, where);
  if (isRecord(value)) return prefixRewrite(value as Record<string, string>, where);
  return fail(`${where} must be a function (path, req) => path or a record { '/prefix': '/replacement' }; got ${show(value)}`);
}
