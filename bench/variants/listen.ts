import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PoolInfo } from '../ipc/messages.ts';

/** What a variant module's `start` hands back to the proxy child. */
export interface StartedVariant {
  port: number;
  /**
   * The upstream pool, for a variant whose client is not node:http (undici);
   * node:http pools are observed on the first upstream request instead (proxy-child.ts).
   */
  pool?: PoolInfo;
}

/** Every variant proxies `target`; listening only on loopback, on a port the OS picks. */
export type StartVariant = (target: string) => Promise<StartedVariant>;

export function listen(handler: http.RequestListener): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handler);
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}
