// The IPC protocol of the idle-WebSocket bench (bench/websockets.ts): the
// parent asks, one question at a time per child, and the child answers with
// `reply` (or `failed`). Smaller than bench/ipc/: these children are asked
// about heap and sockets, never about CPU.

/** The proxy child's memory after full collections. Bytes. */
export interface MemorySample {
  heapUsed: number;
  /** The V8 heap's committed size: heapUsed plus the free space V8 keeps (part of RSS). */
  heapTotal: number;
  rss: number;
  /** Memory of C++ objects bound to JS ones (socket handles, Buffers): not in heapUsed. */
  external: number;
  /** Open file descriptors of the process (two per proxied WebSocket). */
  fds: number;
}

/** What each request is answered with. */
export interface Replies {
  /** Proxy child: gc() a few times, then measure. */
  sample: MemorySample;
  /** Proxy child: a heap snapshot (after gc) written to `file`. */
  snapshot: { file: string };
  /** Client child: open `count` more WebSockets through the proxy. */
  open: { open: number; failed: number; firstError: string | undefined };
  /** Client child: close every WebSocket it holds, and wait for each to close. */
  closeAll: { closed: number };
  /** Upstream child: WebSockets it holds open now. */
  count: { open: number };
}

export type Request =
  | { type: 'sample' }
  | { type: 'snapshot'; file: string }
  | { type: 'open'; count: number }
  | { type: 'closeAll' }
  | { type: 'count' };

export type ChildMessage =
  | { type: 'ready'; port: number }
  | { type: 'reply'; reply: Replies[keyof Replies] }
  | { type: 'failed'; message: string };

export type ParentMessage = Request | { type: 'exit' };
