import type { Logger, LogLevel } from './logging.ts';

type LogMethod = (...args: never[]) => unknown;

/** Any logger with these four methods, such as `console` or a pino logger. */
export interface LevelLogger {
  error: LogMethod;
  warn: LogMethod;
  info: LogMethod;
  debug: LogMethod;
}

/** The `logger` option: a winston Logger, any object with error/warn/info/debug, or `false` for none. */
export type LoggerOption = Logger | LevelLogger | false;

type Fields = Record<string, unknown> | undefined;
const LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

/** Nothing is logged, and `isLevelEnabled` spares every caller that asks first from building its record. */
const SILENT: Logger = {
  isLevelEnabled: () => false,
  log: () => undefined,
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
};

/**
 * The `logger` option as the proxy's Logger, decided once, at construction:
 * undefined (the default winston logger is made by createProxy), or
 * `'invalid'` for a value that is no logger.
 */
export function adaptLogger(value: unknown): Logger | undefined | 'invalid' {
  if (value === undefined) return undefined;
  if (value === false) return SILENT;
  if (value === null || typeof value !== 'object' || !LEVELS.every((level) => typeof (value as Record<string, unknown>)[level] === 'function')) return 'invalid';
  if (isPino(value)) return fromPino(value as PinoLike);
  // winston, and anything else already shaped like our Logger: used as it is, with no layer between.
  if (typeof (value as Partial<Logger>).log === 'function' && typeof (value as Partial<Logger>).isLevelEnabled === 'function') return value as Logger;
  return fromLevelMethods(value as LevelLogger);
}

interface PinoLike {
  isLevelEnabled(level: string): boolean;
  error(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  info(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

// pino's `levels` is `{ values, labels }` (winston's is a flat name -> number record); pino has no `log`.
function isPino(value: object): boolean {
  const { levels, level, isLevelEnabled } = value as { levels?: { values?: unknown }; level?: unknown; isLevelEnabled?: unknown };
  return typeof isLevelEnabled === 'function' && typeof level === 'string' && typeof levels?.values === 'object' && levels.values !== null;
}

/** pino takes the fields first and the message second; its own level decides what is written. */
function fromPino(pino: PinoLike): Logger {
  const log = (level: LogLevel, message: string, fields: Fields): void => pino[level](fields ?? {}, message);
  return {
    isLevelEnabled: (level) => pino.isLevelEnabled(level),
    log,
    error: (message, fields) => log('error', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    info: (message, fields) => log('info', message, fields),
    debug: (message, fields) => log('debug', message, fields),
  };
}

/**
 * console and its like: message first, then the fields. Such an object has no
 * level of its own to ask, so every record is passed on and it decides what
 * to print (console prints them all, debug included).
 */
function fromLevelMethods(target: LevelLogger): Logger {
  const methods = target as unknown as Record<LogLevel, (...args: unknown[]) => unknown>;
  const log = (level: LogLevel, message: string, fields: Fields): void => {
    if (fields === undefined) methods[level](message);
    else methods[level](message, fields);
  };
  return {
    isLevelEnabled: () => true,
    log,
    error: (message, fields) => log('error', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    info: (message, fields) => log('info', message, fields),
    debug: (message, fields) => log('debug', message, fields),
  };
}
