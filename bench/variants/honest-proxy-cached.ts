// honest-proxy (guards on) with its routes from a route function behind
// cachedRoutes: an async store of 10,000 hosts, looked up once per host and
// then served from the cache. Warm, it should cost what a record table costs
// (issue 23's cost check; issue 20's route tables at scale).
import { cachedRoutes } from '../../src/index.ts';
import { HOST } from '../scenarios.ts';
import type { StartVariant } from './listen.ts';
import { GUARDS_ON, startHonestProxy } from './honest-proxy.ts';

export const start: StartVariant = (target) => {
  const store = new Map<string, string>();
  for (let i = 0; i < 9_999; i++) store.set(`${i}-sandbox.preview.test`, `http://127.0.0.1:${1024 + (i % 60_000)}`);
  store.set(HOST, target);
  const routes = cachedRoutes(async (req) => store.get(String(req.headers.host).split(':')[0]!), {
    key: (req) => String(req.headers.host),
    ttl: 600_000,
    max: 20_000,
  });
  return startHonestProxy(target, { ...GUARDS_ON, routes });
};
