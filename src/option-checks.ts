import { closestName } from './closest-name.ts';

/**
 * The shared vocabulary of option validation: the error, how a bad value is
 * shown, and the checks more than one option needs. Each feature's validator
 * (options.ts, guards/rate-limit-options.ts...) builds on these, so every
 * message has the same shape.
 */

/** Raised for a bad option at construction; the message names the option and what it accepts. */
export class ProxyOptionsError extends TypeError {
  readonly code = 'ERR_HONEST_PROXY_OPTIONS';
  constructor(message: string) {
    super(`honest-proxy: ${message}`);
    this.name = 'ProxyOptionsError';
  }
}

/**
 * `true` when `Listed` names every key of `Options`, else the keys left out,
 * so `true satisfies EveryKeyListed<...>` fails to compile, naming them, when
 * an option is added to a type but not to the list its validator accepts.
 */
export type EveryKeyListed<Options, Listed extends PropertyKey> = [Exclude<keyof Options, Listed>] extends [never] ? true : Exclude<keyof Options, Listed>;

export const MAX_TIMER_MS = 2_147_483_647;

export function fail(message: string): never {
  throw new ProxyOptionsError(message);
}

export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value !== null && typeof value === 'object') return 'an object';
  return String(value);
}

export function isFunction(value: unknown): boolean {
  return typeof value === 'function';
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** An option path in quotes; escaped only when it holds what would confuse a reader (a route's host is quoted inside already). */
function quoted(path: string): string {
  return /^[\x20-\x7e]*$/.test(path) ? `"${path}"` : JSON.stringify(path);
}

/**
 * Refuses a key that is not in `known`, naming the closest known one (a typo
 * or a wrong case) or, when none is close, all of them. `prefix` is the path
 * of the nested object, such as `rateLimit.`.
 */
export function rejectUnknownKeys(value: object, known: readonly string[], prefix = ''): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const guess = closestName(key, known);
    const hint = guess === undefined ? `known options are ${known.map((k) => prefix + k).join(', ')}` : `did you mean ${quoted(prefix + guess)}?`;
    fail(`unknown option ${quoted(prefix + key)}; ${hint}`);
  }
}

export function milliseconds(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_TIMER_MS) {
    fail(`${name} must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}; got ${show(value)}`);
  }
  return value;
}

export function booleanOption(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(`${name} must be true or false; got ${show(value)}`);
  return value;
}
