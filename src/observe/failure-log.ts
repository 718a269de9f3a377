import type { IncomingMessage } from 'node:http';
import type { ProxyError } from '../errors.ts';
import { describeCause, failureLevel, logProxyError, requestHost, requestPath, type ExchangeFields, type Logger } from '../logging.ts';
import { fail, MAX_TIMER_MS, show } from '../option-checks.ts';
import { upstreamId } from '../upstream/address.ts';
import { isConnectFailure } from '../upstream/connect-retry.ts';

/** The record of each failure the proxy answers, through `logger`. */
export interface FailureLog {
  record(error: ProxyError, req: IncomingMessage, exchange: ExchangeFields, extra?: Record<string, unknown>): void;
  /** Writes the counts still folded and stops their timers (proxy.close()). */
  flush(): void;
}

export const DEFAULT_FOLD_WINDOW = 1_000;

// Distinct failures folded at once. Past it each failure is logged in full:
// a client spraying hosts cannot make the proxy hold one entry per request.
const MAX_FOLDS = 1_000;

/** `foldRepeatedFailures`: a window in ms, or false to log every failure. */
export function resolveFoldWindow(value: unknown): number | false {
  if (value === undefined) return DEFAULT_FOLD_WINDOW;
  if (value === false) return false;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_TIMER_MS) {
    fail(`foldRepeatedFailures must be false or a whole number of milliseconds from 1 to ${MAX_TIMER_MS}; got ${show(value)}`);
  }
  return value;
}

interface Fold {
  folded: number;
  readonly first: ProxyError;
  readonly fields: Record<string, unknown>;
  readonly timer: NodeJS.Timeout;
}

/**
 * Upstream trouble (the warn records: unreachable, timed out, broken) comes
 * in storms: a dead sandbox whose clients retry fails a thousand times a
 * second, and one record each costs the proxy a tenth of its CPU and the
 * platform its log budget. The first failure of a kind (host, upstream, code,
 * cause, and unless the connect failed, method and path) is logged in full as
 * always; the same failure again within `windowMs` is only counted, and one
 * record with that count (`folded`) closes the window. Metrics still count
 * every failure. Info, debug and error records, failures before an upstream
 * was chosen (a route lookup that timed out) and failures after a response
 * began are never folded.
 */
export function createFailureLog(logger: Logger, windowMs: number | false): FailureLog {
  if (windowMs === false) return { record: (error, req, exchange, extra) => logProxyError(logger, error, req, exchange, extra), flush() {} };
  const folds = new Map<string, Fold>();

  function close(key: string, fold: Fold): void {
    folds.delete(key);
    clearTimeout(fold.timer);
    if (fold.folded === 0) return;
    const { first } = fold;
    logger.warn(`${first.detail} (${fold.folded} more in ${windowMs} ms, folded)`, {
      ...fold.fields,
      status: first.statusCode,
      code: first.code,
      proxyStatus: first.proxyStatus,
      folded: fold.folded,
      windowMs,
      cause: describeCause(first.cause, false),
    });
  }

  return {
    record(error, req, exchange, extra) {
      // Upstream trouble only: a route lookup that timed out has no upstream, and each such record carries its own wait.
      if (extra !== undefined || exchange.upstream === undefined || failureLevel(error.code) !== 'warn' || !logger.isLevelEnabled('warn')) {
        logProxyError(logger, error, req, exchange, extra);
        return;
      }
      const host = requestHost(req, exchange);
      const upstream = upstreamId(exchange.upstream);
      // A refused connect is the same failure whatever was asked; a timeout or a broken response may be one endpoint's.
      const anyRequest = isConnectFailure(error) || isConnectFailure(error.cause);
      const path = anyRequest ? undefined : requestPath(req);
      const causeCode = (error.cause as { code?: unknown } | undefined)?.code;
      const key = `${error.code} ${error.proxyStatus} ${String(causeCode)} ${host} ${upstream}${anyRequest ? '' : ` ${req.method} ${path}`}`;
      const fold = folds.get(key);
      if (fold) {
        fold.folded++;
        return;
      }
      logProxyError(logger, error, req, exchange);
      if (folds.size >= MAX_FOLDS) return;
      const timer = setTimeout(() => close(key, opened), windowMs).unref();
      const fields = anyRequest ? { host, upstream } : { method: req.method, path, host, upstream };
      const opened: Fold = { folded: 0, first: error, fields, timer };
      folds.set(key, opened);
    },
    flush() {
      for (const [key, fold] of folds) close(key, fold);
    },
  };
}
