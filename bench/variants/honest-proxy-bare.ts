// honest-proxy with both guards off (no rate limit, no body limit), otherwise
// exactly honest-proxy.ts: the gap between the two is what the guards cost.
import type { StartVariant } from './listen.ts';
import { startHonestProxy } from './honest-proxy.ts';

export const start: StartVariant = (target) => startHonestProxy(target, { rateLimit: false, bodyLimit: false });
