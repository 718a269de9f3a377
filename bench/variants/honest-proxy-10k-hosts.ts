// honest-proxy (guards on) with a record route table of 10,000 hosts, the
// bench's among them: a lookup in a large table should cost what it costs in
// a table of one (issue 20, route tables at scale).
import { HOST } from '../scenarios.ts';
import type { StartVariant } from './listen.ts';
import { GUARDS_ON, startHonestProxy } from './honest-proxy.ts';

export const start: StartVariant = (target) => {
  const routes: Record<string, string> = {};
  for (let i = 0; i < 9_999; i++) routes[`${i}-sandbox.preview.test`] = `http://127.0.0.1:${1024 + (i % 60_000)}`;
  routes[HOST] = target;
  return startHonestProxy(target, { ...GUARDS_ON, routes });
};
