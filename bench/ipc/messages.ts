// The only messages that cross the IPC channel between the bench (parent) and
// its children. One request is in flight per child at a time, so replies need
// no ids: the parent waits for the next message of the expected type.

export type ChildMessage =
  | { type: 'ready'; port: number; warnings: string[] }
  | { type: 'marked'; rss: number }
  | { type: 'peak'; peakRss: number; rss: number }
  | { type: 'failed'; message: string };

export type ParentMessage = { type: 'mark' } | { type: 'peak' } | { type: 'exit' };

export const MiB = 1024 * 1024;
