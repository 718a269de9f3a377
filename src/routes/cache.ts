import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import { RouteNotFoundError } from '../errors.ts';
import { createDefaultLogger, type Logger } from '../logging.ts';
import { fail, isRecord, MAX_TIMER_MS, milliseconds, rejectUnknownKeys, show } from '../option-checks.ts';
import { connectInvalidations, isRedisClient, type Invalidation, type Invalidations, type RedisClientLike } from './cache-redis.ts';
import { clientLeftReason, deadlineOf, deadlineReason, isThenable, lookUpWithin, lookupTimedOut, watchClient, type RouteLookup } from './deadline.ts';
import { routeKeyOf, withRouteKey } from './route-key.ts';
import type { ProxyRequest, RouteFunction } from './table.ts';
import { normalizeTarget, type ResolvedRoute, type Target } from './target.ts';

/** `portHostRoutes({ ..., cache })`, and the settings part of `cachedRoutes`' options. */
export interface RouteCacheOptions {
  /** ms a found route is kept. Default 30000. */
  ttl?: number;
  /** ms a "no route" answer is kept; 0 keeps none. Default 1000. */
  notFoundTtl?: number;
  /** Found routes kept at most, the least recently used dropped first; as many "no route" answers, apart. Default 10000. */
  max?: number;
  /**
   * A node-redis v5 client, connected: `invalidate()` and `clear()` on one
   * instance then reach every instance on the same channel. The cache
   * subscribes on a duplicate of it, which `close()` closes.
   */
  redis?: RedisClientLike;
  /** The pub/sub channel. Default `'honest-proxy:route-cache'`. */
  channel?: string;
}

export interface CachedRoutesOptions<Req extends IncomingMessage = ProxyRequest> extends RouteCacheOptions {
  /**
   * The cache key of a request: it must name everything the route depends
   * on (the host, a tenant header...). `undefined`: this request is looked
   * up without the cache.
   */
  key: (req: Req) => string | undefined;
}

export interface RouteCacheStats {
  /** Requests answered from the cache (a route, or a kept "no route"). */
  hits: number;
  /** Requests that had to wait for a lookup (their own, or one they shared). */
  misses: number;
  /** Entries held now, found routes and "no route" answers together. */
  size: number;
}

export interface RouteCache {
  /** Drops `key` (for portHostRoutes a sandbox id: every port of it) here and, with `redis`, on every instance. */
  invalidate(key: string): void;
  /** Drops everything, here and, with `redis`, on every instance. */
  clear(): void;
  stats(): RouteCacheStats;
  /** Closes the Redis subscription, if any. */
  close(): Promise<void>;
}

/** A route function with a cache in front: pass it as `routes`, keep it to invalidate. */
export type CachedRoutes<Req extends IncomingMessage = ProxyRequest> = RouteFunction<Req> & RouteCache;

export const DEFAULT_ROUTE_CACHE = { ttl: 30_000, notFoundTtl: 1_000, max: 10_000, channel: 'honest-proxy:route-cache' } as const;
// lru-cache allocates its index for `max` entries up front.
const MAX_ENTRIES = 1_000_000;
const CACHE_NAMES = ['ttl', 'notFoundTtl', 'max', 'redis', 'channel'] as const;

interface CacheSettings {
  ttl: number;
  notFoundTtl: number;
  max: number;
  redis: RedisClientLike | undefined;
  channel: string;
}

/** Checks the cache settings; `prefix` names where they were given (`portHostRoutes.cache.`). */
function resolveCacheSettings(value: Record<string, unknown>, prefix: string): CacheSettings {
  const { notFoundTtl = DEFAULT_ROUTE_CACHE.notFoundTtl, max = DEFAULT_ROUTE_CACHE.max, redis, channel = DEFAULT_ROUTE_CACHE.channel } = value;
  if (typeof notFoundTtl !== 'number' || !Number.isInteger(notFoundTtl) || notFoundTtl < 0 || notFoundTtl > MAX_TIMER_MS) {
    fail(`${prefix}notFoundTtl must be a whole number of milliseconds from 0 (keep none) to ${MAX_TIMER_MS}; got ${show(notFoundTtl)}`);
  }
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > MAX_ENTRIES) fail(`${prefix}max must be a whole number from 1 to ${MAX_ENTRIES}; got ${show(max)}`);
  if (redis !== undefined && !isRedisClient(redis)) fail(`${prefix}redis must be a node-redis v5 client (createClient() from 'redis'), connected; got ${show(redis)}`);
  if (typeof channel !== 'string' || channel === '') fail(`${prefix}channel must be a non-empty string; got ${show(channel)}`);
  return { ttl: milliseconds(value.ttl, `${prefix}ttl`, DEFAULT_ROUTE_CACHE.ttl), notFoundTtl, max, redis, channel };
}

/** What the cache keeps per key: the target as the resolver gave it, and as the proxy uses it. */
interface Entry {
  readonly target: Target | undefined;
  readonly route: ResolvedRoute | undefined;
}

const NO_ROUTE: Entry = Object.freeze({ target: undefined, route: undefined });

interface Waiter {
  resolve(entry: Entry): void;
  reject(err: unknown): void;
  readonly joinedAt: number;
  unwatch(): void;
}

interface Flight {
  readonly key: string;
  readonly controller: AbortController;
  readonly waiters: Set<Waiter>;
  readonly timeoutMs: number;
  first: Waiter | undefined;
  timer: NodeJS.Timeout | undefined;
}

type Lookup = (signal: AbortSignal) => Target | undefined | null | PromiseLike<Target | undefined | null>;

const noop = () => {};
// lru-cache's get() defaults its options to a new `{}` per call: one shared, so a hit allocates nothing.
const GET_OPTIONS: LRUCache.GetOptions<string, Entry, unknown> = Object.freeze({});

/**
 * The keys, the entries and the lookups in flight. Found routes and "no
 * route" answers live in two LRUs of `max` each, so a flood of unknown hosts
 * (which a client can make up at will) cannot push found routes out.
 *
 * A lookup is shared by every request for its key while it runs (single
 * flight). Its signal aborts when every request waiting for it has left, or
 * at its deadline (`timeouts.route` from its start): a request that joins
 * late gets the 504 early rather than keep a hung lookup alive, since under
 * steady traffic a lookup that outlived each of its waiters would never end.
 */
class RouteCacheCore {
  readonly #found: LRUCache<string, Entry>;
  readonly #missing: LRUCache<string, Entry> | undefined;
  readonly #flights = new Map<string, Flight>();
  readonly #where: string;
  readonly #groupOf: ((key: string) => string) | undefined;
  // Keys by group (portHostRoutes: the ports of a sandbox), so invalidating a sandbox need not scan.
  readonly #groups = new Map<string, Set<string>>();
  readonly #invalidations: Invalidations | undefined;
  #logger: Logger | undefined;
  #hits = 0;
  #misses = 0;

  constructor(settings: CacheSettings, where: string, groupOf?: (key: string) => string) {
    this.#where = where;
    this.#groupOf = groupOf;
    // After, not during, the removal: the index asks the LRUs whether the key is still there.
    const disposeAfter = groupOf && ((_entry: Entry, key: string, reason: LRUCache.DisposeReason) => reason !== 'set' && this.#unindex(key));
    this.#found = new LRUCache<string, Entry>({ max: settings.max, ttl: settings.ttl, ...(disposeAfter && { disposeAfter }) });
    this.#missing =
      settings.notFoundTtl === 0 ? undefined : new LRUCache<string, Entry>({ max: settings.max, ttl: settings.notFoundTtl, ...(disposeAfter && { disposeAfter }) });
    this.#invalidations =
      settings.redis && connectInvalidations(settings.redis, settings.channel, (message) => this.#apply(message), () => (this.#logger ??= createDefaultLogger()));
  }

  /** The proxy's logger, for what the cache has to say (Redis outages); the first proxy's, when several share the cache. */
  attach(logger: Logger): void {
    this.#logger ??= logger;
  }

  /** The kept answer for `key`, counted as a hit; undefined (a miss) when there is none. */
  peek(key: string): Entry | undefined {
    const entry = this.#found.get(key, GET_OPTIONS) ?? this.#missing?.get(key, GET_OPTIONS);
    if (entry === undefined) this.#misses++;
    else this.#hits++;
    return entry;
  }

  /** After a miss: joins the lookup in flight for `key`, or starts it. A lookup that answers at once is kept at once. */
  load(req: IncomingMessage, key: string, timeoutMs: number, lookup: Lookup): Entry | Promise<Entry> {
    const running = this.#flights.get(key);
    if (running) return this.#wait(running, req);
    const controller = new AbortController();
    // A synchronous throw goes to the request as it is, and nothing is kept.
    const result = lookup(controller.signal);
    if (!isThenable(result)) return this.#keep(key, result);
    const flight: Flight = { key, controller, waiters: new Set(), timeoutMs, first: undefined, timer: undefined };
    this.#flights.set(key, flight);
    flight.timer = setTimeout(() => this.#expire(flight), timeoutMs);
    result.then(
      (target) => this.#land(flight, target),
      (err: unknown) => this.#reject(flight, err),
    );
    return this.#wait(flight, req);
  }

  invalidate(group: string): void {
    this.#drop(group);
    this.#invalidations?.publish({ key: group });
  }

  clear(): void {
    this.#dropAll();
    this.#invalidations?.publish({ clear: true });
  }

  stats(): RouteCacheStats {
    return { hits: this.#hits, misses: this.#misses, size: this.#found.size + (this.#missing?.size ?? 0) };
  }

  async close(): Promise<void> {
    await this.#invalidations?.close();
  }

  #apply(message: Invalidation): void {
    if ('clear' in message) this.#dropAll();
    else this.#drop(message.key);
  }

  #drop(group: string): void {
    if (this.#groupOf) {
      const keys = this.#groups.get(group);
      // A copy: each delete's dispose edits the set.
      if (keys) for (const key of [...keys]) this.#delete(key);
    } else {
      this.#delete(group);
    }
    // A lookup in flight may have started before the change: its answer goes to its waiters, never into the cache.
    for (const key of this.#flights.keys()) if ((this.#groupOf?.(key) ?? key) === group) this.#flights.delete(key);
  }

  #dropAll(): void {
    this.#found.clear();
    this.#missing?.clear();
    this.#groups.clear();
    this.#flights.clear();
  }

  #delete(key: string): void {
    this.#found.delete(key);
    this.#missing?.delete(key);
  }

  /** The entry for a target, validated, not kept. */
  entry(target: Target | undefined | null): Entry {
    if (target === undefined || target === null) return NO_ROUTE;
    return { target, route: normalizeTarget(target, this.#where) };
  }

  /** The entry for what a lookup answered, kept when it may be. A target that does not validate throws, and is not kept. */
  #keep(key: string, target: Target | undefined | null): Entry {
    const entry = this.entry(target);
    const lru = entry === NO_ROUTE ? this.#missing : this.#found;
    if (!lru) return entry;
    lru.set(key, entry);
    if (this.#groupOf) {
      const group = this.#groupOf(key);
      let keys = this.#groups.get(group);
      if (!keys) this.#groups.set(group, (keys = new Set()));
      keys.add(key);
    }
    return entry;
  }

  #unindex(key: string): void {
    // The same key may still be in the other LRU (a "no route" that became a route).
    if (this.#found.has(key) || this.#missing?.has(key)) return;
    const group = this.#groupOf!(key);
    const keys = this.#groups.get(group);
    keys?.delete(key);
    if (keys?.size === 0) this.#groups.delete(group);
  }

  /** Takes the flight out of the map, if it is still the one for its key; true when it was. */
  #detach(flight: Flight): boolean {
    clearTimeout(flight.timer);
    if (this.#flights.get(flight.key) !== flight) return false;
    this.#flights.delete(flight.key);
    return true;
  }

  #wait(flight: Flight, req: IncomingMessage): Promise<Entry> {
    return new Promise<Entry>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, joinedAt: performance.now(), unwatch: noop };
      flight.first ??= waiter;
      flight.waiters.add(waiter);
      waiter.unwatch = watchClient(req, () => this.#leave(flight, waiter));
    });
  }

  #land(flight: Flight, target: Target | undefined | null): void {
    let entry: Entry;
    try {
      entry = this.#detach(flight) ? this.#keep(flight.key, target) : this.entry(target);
    } catch (err) {
      this.#reject(flight, err);
      return;
    }
    for (const waiter of flight.waiters) {
      waiter.unwatch();
      waiter.resolve(entry);
    }
    flight.waiters.clear();
  }

  /** A lookup that threw: its waiters get the error, and the next request asks again. */
  #reject(flight: Flight, err: unknown): void {
    this.#detach(flight);
    for (const waiter of flight.waiters) {
      waiter.unwatch();
      waiter.reject(err);
    }
    flight.waiters.clear();
  }

  #expire(flight: Flight): void {
    this.#detach(flight);
    for (const waiter of flight.waiters) {
      waiter.unwatch();
      waiter.reject(lookupTimedOut(flight.timeoutMs, waiter.joinedAt, waiter !== flight.first));
    }
    flight.waiters.clear();
    flight.controller.abort(deadlineReason(flight.timeoutMs));
  }

  /** One waiter's client left: it stops waiting; the lookup stops only when nobody waits for it any more. */
  #leave(flight: Flight, waiter: Waiter): void {
    if (!flight.waiters.delete(waiter)) return;
    waiter.reject(clientLeftReason());
    if (flight.waiters.size > 0) return;
    this.#detach(flight);
    flight.controller.abort(new DOMException('every request waiting for this route lookup left', 'AbortError'));
  }
}

/** The proxy's way into a cached table: a hit is returned as it is, a route already validated. */
export type CachedLookup = (req: IncomingMessage, host: string, timeoutMs: number) => ResolvedRoute | Promise<ResolvedRoute>;

const CACHED = Symbol('honest-proxy.cached-routes');

interface CacheInternals {
  lookup: CachedLookup;
  core: RouteCacheCore;
}

function internalsOf(routes: unknown): CacheInternals | undefined {
  return typeof routes === 'function' ? (routes as { [CACHED]?: CacheInternals })[CACHED] : undefined;
}

/** The cached lookup of a `routes` option built by cachedRoutes or portHostRoutes({ cache }), else undefined. */
export function cachedLookupOf(routes: unknown): CachedLookup | undefined {
  return internalsOf(routes)?.lookup;
}

/** What the proxy holds of the cache behind its `routes`: where to log, and the counts for metrics. */
export interface RouteCacheLink {
  attach(logger: Logger): void;
  stats(): RouteCacheStats;
}

export function routeCacheOf(routes: unknown): RouteCacheLink | undefined {
  return internalsOf(routes)?.core;
}

function routeOf(entry: Entry): ResolvedRoute {
  if (entry.route === undefined) throw new RouteNotFoundError();
  return entry.route;
}

const targetOf = (entry: Entry) => entry.target;

const NEVER = new AbortController().signal;

/**
 * How a cached table finds a request's key, and its lookup on a miss.
 * `keyOf` gets the host as the proxy routes it (normalised), or undefined
 * when called from outside the proxy.
 */
export interface CacheSource<Req extends IncomingMessage> {
  /** The key; undefined when the request cannot be cached (see `uncached`). */
  keyOf(req: Req, host: string | undefined): string | undefined;
  /** The lookup for `key` on a miss; undefined when the key names no route at all (nothing is kept). */
  lookUp(req: Req, key: string): ((lookup: RouteLookup) => Target | undefined | Promise<Target | undefined>) | undefined;
  /** A request without a key: its lookup, uncached; undefined when such a request has no route. */
  uncached: RouteFunction<Req> | undefined;
  /** For portHostRoutes: the group a key belongs to (its sandbox id), which `invalidate` takes. */
  groupOf?: (key: string) => string;
  /** What `invalidate` is given, as keys are spelled (portHostRoutes: lower case). */
  normalizeKey?: (key: string) => string;
  /** Where a bad target came from, for the 500's log record. */
  where: string;
}

/** Puts a cache in front of `source`: the route function, its invalidation handles, and the proxy's fast path. */
export function cacheRoutes<Req extends IncomingMessage>(source: CacheSource<Req>, settings: CacheSettings): CachedRoutes<Req> {
  const core = new RouteCacheCore(settings, source.where, source.groupOf);
  const { keyOf, lookUp, uncached } = source;

  // Apart from the hit path: closures there would make V8 allocate a context on every call, hits too.
  const miss = (req: IncomingMessage, key: string | undefined, timeoutMs: number): ResolvedRoute | Promise<ResolvedRoute> => {
    if (key === undefined) {
      if (!uncached) throw new RouteNotFoundError();
      return lookUpWithin(timeoutMs, req, (lookup) => uncached(req as Req, lookup), (target) => routeOf(core.entry(target)));
    }
    const find = lookUp(req as Req, key);
    if (!find) throw new RouteNotFoundError();
    const loaded = core.load(req, key, timeoutMs, (signal) => find({ signal }));
    return isThenable(loaded) ? loaded.then(routeOf) : routeOf(loaded);
  };

  const cachedLookup: CachedLookup = (req, host, timeoutMs) => {
    const key = keyOf(req as Req, host);
    const entry = key === undefined ? undefined : core.peek(key);
    return entry === undefined ? miss(req, key, timeoutMs) : routeOf(entry);
  };

  // Called as a plain route function (from a function of the user's that
  // composes tables): the target as the resolver gave it.
  const route = function cachedRoute(req: Req, lookup?: RouteLookup): Target | undefined | Promise<Target | undefined> {
    const key = keyOf(req, undefined);
    if (key === undefined) return uncached?.(req, lookup ?? { signal: NEVER });
    const entry = core.peek(key);
    if (entry !== undefined) return entry.target;
    const find = lookUp(req, key);
    if (!find) return undefined;
    const loaded = core.load(req, key, deadlineOf(lookup), (signal) => find({ signal }));
    return isThenable(loaded) ? loaded.then(targetOf) : loaded.target;
  };

  const normalizeKey = source.normalizeKey ?? ((key: string) => key);
  const handles: RouteCache = {
    invalidate(key) {
      if (typeof key !== 'string') throw new TypeError(`invalidate(key): key must be a string; got ${show(key)}`);
      core.invalidate(normalizeKey(key));
    },
    clear: () => core.clear(),
    stats: () => core.stats(),
    close: () => core.close(),
  };
  const internals: CacheInternals = { lookup: cachedLookup, core };
  return Object.assign(route, handles, { [CACHED]: internals });
}

/** Validates `cache` as portHostRoutes takes it. */
export function portHostCacheSettings(value: unknown): CacheSettings {
  if (!isRecord(value)) fail(`portHostRoutes: cache must be an object { ${CACHE_NAMES.join(', ')} }; got ${show(value)}`);
  rejectUnknownKeys(value, CACHE_NAMES, 'portHostRoutes.cache.');
  return resolveCacheSettings(value, 'portHostRoutes.cache.');
}

/**
 * Puts a cache in front of a route function: `key(req)` names the requests
 * that share a route. Found routes are kept `ttl` ms, "no route" answers
 * `notFoundTtl` ms, errors never; concurrent requests for one key share one
 * call; `invalidate(key)` and `clear()` drop entries, on every instance with
 * `redis`.
 *
 * @example
 * ```ts
 * const routes = cachedRoutes(
 *   async (req, { signal }) => (await db.tenants.find(req.headers['x-tenant'], { signal }))?.origin,
 *   { key: (req) => String(req.headers['x-tenant']), ttl: 60_000 },
 * );
 * app.use(createProxy({ routes }));
 * tenants.on('moved', (id) => routes.invalidate(id));
 * ```
 */
export function cachedRoutes<Req extends IncomingMessage = ProxyRequest>(routes: RouteFunction<Req>, options: CachedRoutesOptions<Req>): CachedRoutes<Req> {
  if (typeof routes !== 'function') fail(`cachedRoutes(routes, options): routes must be a route function (req, { signal }) => target | undefined; got ${show(routes)}`);
  if (!isRecord(options)) fail(`cachedRoutes(routes, options): options must be an object { key, ${CACHE_NAMES.join(', ')} }; got ${show(options)}`);
  rejectUnknownKeys(options, ['key', ...CACHE_NAMES], 'cachedRoutes.');
  const { key } = options;
  if (typeof key !== 'function') fail(`cachedRoutes.key must be a function (req) => string naming everything the route depends on; got ${show(key)}`);
  const settings = resolveCacheSettings(options as unknown as Record<string, unknown>, 'cachedRoutes.');
  const keyOf = (req: Req) => {
    const value = key(req);
    if (value === undefined || typeof value === 'string') return value;
    throw new TypeError(`cachedRoutes.key(req) must return a string or undefined; got ${show(value)}`);
  };
  const cached = cacheRoutes<Req>(
    { keyOf, lookUp: (req) => (lookup) => routes(req, lookup), uncached: routes, where: 'the route function result' },
    settings,
  );
  // Activity and metrics know the routes as the wrapped function does.
  return withRouteKey(cached, routeKeyOf(routes)) as CachedRoutes<Req>;
}
