import type { IncomingMessage } from 'node:http';
import { fail, isRecord, rejectUnknownKeys, show } from '../../option-checks.ts';
import type { ProxyRequest } from '../../routes/table.ts';
import { createStickyCookie, type StickyCookie } from './sticky-cookie.ts';

/**
 * How a route with several upstreams chooses one, proxy-wide or per route.
 * Hash policies (`ip-hash`, `cookie`, `hash`) keep a client on its upstream;
 * when that one is taken out by passive health the client goes to another,
 * never refused.
 */
export type BalanceOption<Req extends IncomingMessage = ProxyRequest> =
  | 'round-robin'
  | 'least-connections'
  | 'ip-hash'
  | { cookie: string; secret?: string }
  | { hash: BalanceKeyFunction<Req> };

// The method form keeps the parameter bivariant, as for requestHeaders.set.
export type BalanceKeyFunction<Req extends IncomingMessage = ProxyRequest> = {
  key(req: Req): string | undefined;
}['key'];

/** A balance option checked and compiled once. */
export type BalancePolicy =
  | { kind: 'round-robin' }
  | { kind: 'least-connections' }
  | { kind: 'ip-hash' }
  | { kind: 'cookie'; cookie: StickyCookie }
  | { kind: 'hash'; key: BalanceKeyFunction<IncomingMessage>; where: string };

export const ROUND_ROBIN: BalancePolicy = { kind: 'round-robin' };
const NAMED: Readonly<Record<string, BalancePolicy>> = {
  'round-robin': ROUND_ROBIN,
  'least-connections': { kind: 'least-connections' },
  'ip-hash': { kind: 'ip-hash' },
};

// RFC 6265 cookie-name: an RFC 9110 token.
const TOKEN = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

const ACCEPTED = `'round-robin', 'least-connections', 'ip-hash', { cookie: 'name' } or { hash: (req) => key }`;

export function compileBalance(value: unknown, where: string): BalancePolicy {
  if (typeof value === 'string') {
    const named = NAMED[value];
    if (named) return named;
  }
  if (isRecord(value) && 'cookie' in value) {
    rejectUnknownKeys(value, ['cookie', 'secret'], `${where}.`);
    const { cookie, secret } = value;
    if (typeof cookie !== 'string' || !TOKEN.test(cookie)) fail(`${where}.cookie must be a cookie name (letters, digits and !#$%&'*+-.^_\`|~); got ${show(cookie)}`);
    if (secret !== undefined && (typeof secret !== 'string' || secret.length < 16)) {
      fail(`${where}.secret must be a string of at least 16 characters (the key that makes cookie values unforgeable); got ${show(secret)}`);
    }
    return { kind: 'cookie', cookie: createStickyCookie(cookie, secret) };
  }
  if (isRecord(value) && 'hash' in value) {
    rejectUnknownKeys(value, ['hash'], `${where}.`);
    if (typeof value.hash !== 'function') fail(`${where}.hash must be a function (req) => key; got ${show(value.hash)}`);
    return { kind: 'hash', key: value.hash as BalanceKeyFunction<IncomingMessage>, where: `${where}.hash` };
  }
  return fail(`${where} must be ${ACCEPTED}; got ${show(value)}`);
}
