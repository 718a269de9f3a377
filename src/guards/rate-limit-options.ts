import http from 'node:http';
import { booleanOption, fail, type EveryKeyListed, isFunction, isRecord, milliseconds, rejectUnknownKeys, show } from '../option-checks.ts';
import type { RateLimitOptions } from './rate-limit.ts';
import { DRAFT_VERSIONS } from './rate-limit-headers.ts';

// express-rate-limit v8 options the proxy passes on or renders the 429 with
// (`max` is its older name for `limit`, `headers` for `legacyHeaders`), plus
// its own `onStoreError`.
const RATE_LIMIT_OPTIONS = [
  'windowMs',
  'limit',
  'max',
  'keyGenerator',
  'ipv6Subnet',
  'skip',
  'skipSuccessfulRequests',
  'skipFailedRequests',
  'requestWasSuccessful',
  'store',
  'retryAfter',
  'standardHeaders',
  'legacyHeaders',
  'headers',
  'identifier',
  'requestPropertyName',
  'validate',
  'logger',
  'passOnStoreError',
  'onStoreError',
] as const satisfies ReadonlyArray<keyof RateLimitOptions>;
true satisfies EveryKeyListed<RateLimitOptions, (typeof RATE_LIMIT_OPTIONS)[number]>;

// express-rate-limit options that write the 429 itself, which the proxy writes.
const RENDERS_THE_RESPONSE = ['handler', 'message', 'statusCode'];

// Names the request already has (req.headers, req.body, req.ip...): the counts would overwrite them.
const TAKEN_REQUEST_NAMES = ['app', 'res', 'next', 'params', 'query', 'body', 'route', 'baseUrl', 'originalUrl', 'path', 'ip', 'ips', 'host', 'hostname', 'protocol', 'secure', 'subdomains', 'xhr', 'fresh', 'stale', 'cookies', 'signedCookies'];

/** The `rateLimit` option: `false`, or express-rate-limit options checked as it would use them. */
export function resolveRateLimit(value: unknown): RateLimitOptions | false {
  if (value === undefined || value === false) return false;
  if (!isRecord(value)) {
    fail(`rateLimit must be false or express-rate-limit options { windowMs, limit, keyGenerator, skip, store, onStoreError... }; got ${show(value)}`);
  }
  for (const key of RENDERS_THE_RESPONSE) {
    if (Object.hasOwn(value, key)) {
      fail(
        `rateLimit.${key} is not accepted: the proxy renders the 429 itself, with Retry-After and the RateLimit headers; ` +
          "choose its body with errorFormat ('text', 'json' or a function), or pass the error on with onError: 'next'",
      );
    }
  }
  rejectUnknownKeys(value, RATE_LIMIT_OPTIONS, 'rateLimit.');
  if (value.windowMs !== undefined) milliseconds(value.windowMs, 'rateLimit.windowMs', 0);
  checkCount(value);
  checkKey(value);
  checkCounting(value);
  checkResponse(value);
  checkExpressRateLimitOwn(value);
  checkStoreFailure(value);
  return value as unknown as RateLimitOptions;
}

function checkCount({ limit, max }: Record<string, unknown>): void {
  if (limit !== undefined && max !== undefined) fail('rateLimit.limit and rateLimit.max are one option (max is its older name); give only one');
  const [name, count] = max === undefined ? ['limit', limit] : ['max', max];
  if (!isFunction(count) && !(typeof count === 'number' && Number.isInteger(count) && count > 0)) {
    fail(`rateLimit.${name} must be a whole number above 0 or a function (req, res) => number; got ${show(count)}`);
  }
}

function checkKey({ keyGenerator, ipv6Subnet }: Record<string, unknown>): void {
  if (keyGenerator !== undefined && !isFunction(keyGenerator)) fail(`rateLimit.keyGenerator must be a function (req, res) => string; got ${show(keyGenerator)}`);
  if (ipv6Subnet === undefined) return;
  if (ipv6Subnet !== false && !isFunction(ipv6Subnet) && !(typeof ipv6Subnet === 'number' && Number.isInteger(ipv6Subnet) && ipv6Subnet >= 1 && ipv6Subnet <= 128)) {
    fail(`rateLimit.ipv6Subnet must be a prefix length from 1 to 128, false, or a function (req, res) => number; got ${show(ipv6Subnet)}`);
  }
  if (keyGenerator !== undefined) {
    fail('rateLimit.ipv6Subnet applies to the default key only; with rateLimit.keyGenerator, call ipKeyGenerator(ip, prefix) in it instead');
  }
}

function checkCounting(options: Record<string, unknown>): void {
  const { skip, store, requestWasSuccessful } = options;
  if (skip !== undefined && !isFunction(skip)) fail(`rateLimit.skip must be a function (req, res) => boolean; got ${show(skip)}`);
  booleanOption(options.skipSuccessfulRequests, 'rateLimit.skipSuccessfulRequests', false);
  booleanOption(options.skipFailedRequests, 'rateLimit.skipFailedRequests', false);
  if (requestWasSuccessful !== undefined && !isFunction(requestWasSuccessful)) {
    fail(`rateLimit.requestWasSuccessful must be a function (req, res) => boolean; got ${show(requestWasSuccessful)}`);
  }
  if (store !== undefined && typeof (store as { increment?: unknown } | null)?.increment !== 'function') {
    fail(`rateLimit.store must be an express-rate-limit Store (e.g. new RedisStore(...)); got ${show(store)}`);
  }
}

/** What the 429 carries: Retry-After, and the header sets express-rate-limit would write. */
function checkResponse({ retryAfter, standardHeaders, legacyHeaders, headers, identifier }: Record<string, unknown>): void {
  if (retryAfter !== undefined && !isFunction(retryAfter) && !(typeof retryAfter === 'number' && Number.isInteger(retryAfter) && retryAfter >= 0)) {
    fail(`rateLimit.retryAfter must be a whole number of seconds or a function (req, res) => number; got ${show(retryAfter)}`);
  }
  if (standardHeaders !== undefined && typeof standardHeaders !== 'boolean' && !DRAFT_VERSIONS.includes(standardHeaders as never)) {
    fail(`rateLimit.standardHeaders must be ${DRAFT_VERSIONS.map((v) => `'${v}'`).join(', ')}, true (draft-6) or false; got ${show(standardHeaders)}`);
  }
  booleanOption(legacyHeaders, 'rateLimit.legacyHeaders', false);
  booleanOption(headers, "rateLimit.headers (express-rate-limit's older name for legacyHeaders)", false);
  if (legacyHeaders !== undefined && headers !== undefined) {
    fail('rateLimit.legacyHeaders and rateLimit.headers are one option (headers is its older name); give only one');
  }
  if (identifier !== undefined && typeof identifier !== 'string' && !isFunction(identifier)) {
    fail(`rateLimit.identifier must be a string or a function (req, res) => string; got ${show(identifier)}`);
  }
}

function checkExpressRateLimitOwn({ requestPropertyName, validate, logger }: Record<string, unknown>): void {
  if (requestPropertyName !== undefined) {
    if (
      typeof requestPropertyName !== 'string' ||
      !/^[A-Za-z_$][\w$]*$/.test(requestPropertyName) ||
      requestPropertyName in new http.IncomingMessage(null as never) ||
      TAKEN_REQUEST_NAMES.includes(requestPropertyName)
    ) {
      fail(`rateLimit.requestPropertyName must be a property name the request does not already have, such as 'rateLimit'; got ${show(requestPropertyName)}`);
    }
  }
  const isChecks = (checks: unknown): boolean => isRecord(checks) && Object.values(checks).every((v) => typeof v === 'boolean');
  if (validate !== undefined && typeof validate !== 'boolean' && !isChecks(validate)) {
    fail(`rateLimit.validate must be true, false, or a record of check names to true or false; got ${show(validate)}`);
  }
  if (logger !== undefined && !(isFunction((logger as { error?: unknown } | null)?.error) && isFunction((logger as { warn?: unknown }).warn))) {
    fail(`rateLimit.logger must be an object with error(err, message) and warn(err, message) methods; got ${show(logger)}`);
  }
}

function checkStoreFailure({ passOnStoreError, onStoreError }: Record<string, unknown>): void {
  booleanOption(passOnStoreError, 'rateLimit.passOnStoreError', true);
  if (passOnStoreError !== undefined && onStoreError !== undefined) {
    fail("rateLimit.passOnStoreError and rateLimit.onStoreError say the same thing (true is 'allow', false is 'deny'); give only one");
  }
  if (onStoreError !== undefined && onStoreError !== 'allow' && onStoreError !== 'deny') {
    fail(`rateLimit.onStoreError must be 'allow' or 'deny'; got ${show(onStoreError)}`);
  }
}
