// The only messages that cross the IPC channel between the bench (parent) and
// its children. One request is in flight per child at a time, so replies need
// no ids: the parent waits for the next message of the expected type.

/** How a proxy child reaches its upstream, as observed on its first upstream request (or as the variant declares it). */
export interface PoolInfo {
  /** e.g. "node:http Agent (httpxy's module default)", "undici Pool". */
  client: string;
  keepAlive: boolean;
  /** null: unlimited or not applicable. */
  maxSockets: number | null;
  /** Idle sockets kept for reuse; beyond this, a socket that comes free is closed. null: no such cap. */
  maxFreeSockets: number | null;
  /** Anything that defeats the pool, e.g. `Connection: close` on every upstream request. */
  note?: string;
}

export type ChildMessage =
  | { type: 'ready'; port: number }
  | { type: 'marked'; rss: number }
  | { type: 'peak'; peakRss: number; rss: number }
  /**
   * `process.cpuUsage()` of the whole child (every thread) since it started,
   * the TCP connections its servers have accepted so far, and its upstream
   * pool once it has been observed.
   */
  | { type: 'usage'; userMicros: number; systemMicros: number; gcMillis: number; accepted: number; pool: PoolInfo | null }
  | { type: 'failed'; message: string };

export type ParentMessage = { type: 'mark' } | { type: 'peak' } | { type: 'usage' } | { type: 'exit' };

export const MiB = 1024 * 1024;
