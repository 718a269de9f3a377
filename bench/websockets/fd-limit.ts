// How many WebSockets one proxy process can hold: each proxied WebSocket is
// two descriptors in the proxy (the client's socket and the upstream's), one
// in the client and one in the upstream. The hard limit is what a child can
// raise its soft limit to; raising the hard limit needs CAP_SYS_RESOURCE,
// which containers and VMs often drop (this one does, even for root).
import { execFileSync } from 'node:child_process';

/** Descriptors a proxy process holds besides its WebSockets: stdio, IPC, epoll, libuv's pipes, the listening socket, a margin. */
export const FD_RESERVE = 200;
/** Descriptors per proxied WebSocket in the proxy process. */
export const FDS_PER_WEBSOCKET = 2;

/** `ulimit -Hn` as sh reports it: a number, or Infinity for "unlimited". Node has no getrlimit. */
export function hardFileLimit(): number {
  const out = execFileSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  return out === 'unlimited' ? Infinity : Number(out);
}

/** The most WebSockets that fit in one proxy process under `hardLimit`, in whole hundreds. */
export function maxWebSockets(hardLimit: number): number {
  if (!Number.isFinite(hardLimit)) return Infinity;
  return Math.floor((hardLimit - FD_RESERVE) / FDS_PER_WEBSOCKET / 100) * 100;
}
