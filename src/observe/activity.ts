import { describeCause, type Logger } from '../logging.ts';
import { fail, milliseconds, show } from '../option-checks.ts';

export type ActivityKind = 'http' | 'websocket';

/** What `onActivity` hears with a route key. */
export interface ActivityInfo {
  /** What passed: an HTTP request, or a WebSocket (also each interval while one stays open). */
  kind: ActivityKind;
  /** HTTP requests in flight plus WebSockets open for the key now. */
  openConnections: number;
}

/** Told when traffic for a route key passes; its result is never awaited, and a throw or rejection is logged. */
export type ActivityListener = (key: string, info: ActivityInfo) => void | PromiseLike<void>;

export interface ActivitySettings {
  listener: ActivityListener;
  /** ms: at most one report per key in this time, and one each time it passes while something stays open. */
  interval: number;
}

export const DEFAULT_ACTIVITY_INTERVAL = 30_000;

export function resolveActivity(onActivity: unknown, activityInterval: unknown): ActivitySettings | undefined {
  if (onActivity === undefined) {
    // Most likely a listener that was meant to be there: say so rather than report nothing.
    if (activityInterval !== undefined) fail('activityInterval is set but onActivity is not: set onActivity: (key, info) => ..., or leave activityInterval out');
    return undefined;
  }
  if (typeof onActivity !== 'function') fail(`onActivity must be a function (key, { kind, openConnections }) => void; got ${show(onActivity)}`);
  return { listener: onActivity as ActivityListener, interval: milliseconds(activityInterval, 'activityInterval', DEFAULT_ACTIVITY_INTERVAL) };
}

/** Per-key traffic, reported to `onActivity` at most once an interval. */
export interface Activity {
  /** Traffic for `key` passes now, and stays open until `ended` (an HTTP exchange, a WebSocket). */
  began(key: string, kind: ActivityKind): void;
  ended(key: string, kind: ActivityKind): void;
  /** For proxy.close(): no more reports, and no timer left. */
  stop(): void;
  /** Keys remembered now: those with something open, or reported less than an interval ago. */
  readonly size: number;
}

/** Where a proxy keeps its Activity, out of the public type: tests read its `size` through `activityOf`. */
export const ACTIVITY = Symbol('honest-proxy.activity');

export function activityOf(proxy: object): Activity | undefined {
  return (proxy as { [ACTIVITY]?: Activity })[ACTIVITY];
}

interface Entry {
  /** performance.now() of the last report. */
  reportedAt: number;
  open: number;
  webSockets: number;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * One Map of keys and one timer for all of them. The Map's order is report
 * order (a report moves its key to the end), so the first entry is always
 * the next one due, and a sweep stops at the first that is not: it reports
 * keys with something open, and forgets the others, whose next traffic may
 * be reported at once anyway. Keys that went quiet cost nothing after an
 * interval, and with no key there is no timer.
 */
export function createActivity({ listener, interval }: ActivitySettings, logger: Logger): Activity {
  const entries = new Map<string, Entry>();
  // Keys due within this much of each other share a sweep: thousands of keys
  // reported a few ms apart would otherwise wake the timer thousands of times.
  const gather = Math.ceil(interval / 20);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  function failed(key: string, err: unknown): void {
    logger.warn('onActivity failed', { key, cause: describeCause(err, true) });
  }

  function report(key: string, entry: Entry, kind: ActivityKind, now: number): void {
    entry.reportedAt = now;
    entries.delete(key);
    entries.set(key, entry);
    let result: unknown;
    try {
      result = listener(key, { kind, openConnections: entry.open });
    } catch (err) {
      failed(key, err);
      return;
    }
    if (isThenable(result)) result.then(undefined, (err: unknown) => failed(key, err));
  }

  function arm(now: number): void {
    if (timer !== undefined || stopped) return;
    const first = entries.values().next();
    if (first.done) return;
    timer = setTimeout(sweep, Math.max(Math.ceil(first.value.reportedAt + interval - now), gather));
    // Reporting is no reason to keep a process alive.
    timer.unref();
  }

  function sweep(): void {
    timer = undefined;
    const now = performance.now();
    // A key reported here moves to the end with a fresh time, and stops the loop when reached again.
    for (const [key, entry] of entries) {
      if (now - entry.reportedAt < interval) break;
      if (entry.open > 0) report(key, entry, entry.webSockets > 0 ? 'websocket' : 'http', now);
      else entries.delete(key);
    }
    arm(now);
  }

  return {
    began(key, kind) {
      if (stopped) return;
      let entry = entries.get(key);
      if (entry === undefined) {
        entry = { reportedAt: -Infinity, open: 0, webSockets: 0 };
        entries.set(key, entry);
      }
      entry.open++;
      if (kind === 'websocket') entry.webSockets++;
      const now = performance.now();
      if (now - entry.reportedAt < interval) return;
      report(key, entry, kind, now);
      arm(now);
    },
    ended(key, kind) {
      // Not there after stop(); never forgotten while open otherwise.
      const entry = entries.get(key);
      if (entry === undefined) return;
      entry.open--;
      if (kind === 'websocket') entry.webSockets--;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
      entries.clear();
    },
    get size() {
      return entries.size;
    },
  };
}
