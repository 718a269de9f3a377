import type { ServerResponse } from 'node:http';

interface Entry {
  res: ServerResponse;
  prev: Entry | undefined;
  next: Entry | undefined;
}

/**
 * The responses in flight, in a linked list rather than a Map or Set.
 * Measured (docs/performance.md): keying a Map or Set by the request or
 * response object cost ~20 µs of CPU a request, about an eighth of the whole
 * proxy's, because V8 must give each of these objects an identity hash. A
 * list entry needs none, and adding or removing one allocates nothing else.
 */
export class InFlightResponses implements Iterable<ServerResponse> {
  size = 0;
  private head: Entry | undefined;

  /** Adds `res`; the returned function removes it again (once). */
  add(res: ServerResponse): () => void {
    const entry: Entry = { res, prev: undefined, next: this.head };
    if (this.head) this.head.prev = entry;
    this.head = entry;
    this.size++;
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      if (entry.prev) entry.prev.next = entry.next;
      else this.head = entry.next;
      if (entry.next) entry.next.prev = entry.prev;
      this.size--;
    };
  }

  *[Symbol.iterator](): Iterator<ServerResponse> {
    // The next entry is read before yielding: a consumer may remove the current one.
    for (let entry = this.head; entry; ) {
      const next = entry.next;
      yield entry.res;
      entry = next;
    }
  }
}
