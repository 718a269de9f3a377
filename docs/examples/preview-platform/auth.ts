// The platform's auth, in front of the proxy: it gates HTTP and WebSocket
// upgrades alike (both go through the app with upgradeThrough). The proxy
// then strips every place the token was read from (see platform.ts), so a
// sandbox, which runs code nobody on the platform reviewed, never gets it.
import type { NextFunction, Request, Response } from 'express';

export interface User {
  id: string;
}

export type AuthedRequest = Request & { user: User };

/** Where a client carries the platform token. Each is stripped before the proxy forwards. */
export const TOKEN_COOKIE = '__Host-preview_session'; // browsers
export const TOKEN_QUERY = 'preview_token'; // a shared link; a browser WebSocket, which cannot set headers

function bearer(header: string | undefined): string | undefined {
  return header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
}

function cookie(header: string | undefined, name: string): string | undefined {
  return header
    ?.split(/;\s*/)
    .find((pair) => pair.startsWith(`${name}=`))
    ?.slice(name.length + 1);
}

function queryToken(req: Request): string | undefined {
  const value = req.query[TOKEN_QUERY];
  return typeof value === 'string' ? value : undefined;
}

/**
 * 401 unless the request carries a token `verify` accepts; otherwise `req.user`
 * is the user it names. Nothing is forwarded for a refused request: the
 * proxy is never reached.
 */
export function requireUser(verify: (token: string) => User | undefined | Promise<User | undefined>) {
  return function platformAuth(req: Request, res: Response, next: NextFunction): void {
    const token = bearer(req.headers.authorization) ?? cookie(req.headers.cookie, TOKEN_COOKIE) ?? queryToken(req);
    // A promise chain rather than an async function: Express 4 would not see a rejection.
    Promise.resolve(token === undefined ? undefined : verify(token)).then((user) => {
      if (!user) {
        res.status(401).set('www-authenticate', 'Bearer').type('text/plain').send('Unauthorized');
        return;
      }
      (req as AuthedRequest).user = user;
      next();
    }, next);
  };
}
