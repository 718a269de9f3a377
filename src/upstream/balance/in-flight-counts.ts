/**
 * Requests and WebSockets in flight per upstream, for least-connections: a
 * WebSocket counts for as long as it stays open, so long-lived ones spread
 * instead of piling onto whichever upstream round robin gave them. Entries
 * at zero are dropped, so the map holds only upstreams with traffic open.
 */
export class InFlightCounts {
  readonly #counts = new Map<string, number>();

  of(upstream: URL): number {
    return this.#counts.get(upstream.href) ?? 0;
  }

  add(upstream: URL): void {
    this.#counts.set(upstream.href, this.of(upstream) + 1);
  }

  remove(upstream: URL): void {
    const left = this.of(upstream) - 1;
    if (left > 0) this.#counts.set(upstream.href, left);
    else this.#counts.delete(upstream.href);
  }
}
