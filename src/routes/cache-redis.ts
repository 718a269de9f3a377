import { randomUUID } from 'node:crypto';
import { describeCause, type Logger } from '../logging.ts';

/**
 * What the route cache needs of a node-redis v5 client (`createClient()`
 * from `redis`): the client itself, connected by its owner. Invalidations
 * are published through it; the cache subscribes on `client.duplicate()`,
 * because a connection in subscriber mode can send nothing else. The
 * duplicate is the cache's: it opens it, and `close()` destroys it.
 */
export interface RedisClientLike {
  publish(channel: string, message: string): Promise<unknown>;
  duplicate(): RedisSubscriberLike;
}

export interface RedisSubscriberLike {
  readonly isOpen: boolean;
  connect(): Promise<unknown>;
  subscribe(channel: string, listener: (message: string, channel: string) => unknown): Promise<unknown>;
  on(event: 'error' | 'ready', listener: (err?: unknown) => void): unknown;
  destroy(): void;
}

export type Invalidation = { key: string } | { clear: true };

export interface Invalidations {
  /** Tells every other instance on the channel. Never throws: a failure is logged. */
  publish(message: Invalidation): void;
  close(): Promise<void>;
}

export function isRedisClient(value: unknown): value is RedisClientLike {
  const client = value as Partial<RedisClientLike> | null | undefined;
  return typeof client?.publish === 'function' && typeof client.duplicate === 'function';
}

/**
 * Invalidations across instances over Redis pub/sub. While Redis is away the
 * instance keeps serving from its own cache, and says so once per outage;
 * when the subscription is back, the cache is cleared, because what was
 * published meanwhile never arrived (pub/sub keeps nothing for a subscriber
 * that is not there).
 */
export function connectInvalidations(client: RedisClientLike, channel: string, apply: (message: Invalidation) => void, logger: () => Logger): Invalidations {
  // Our own messages come back to us: dropping a key twice is harmless, but it
  // would throw away a route this instance looked up again in between.
  const self = randomUUID();
  const subscriber = client.duplicate();
  let down = false;
  let closed = false;

  const outage = (cause: unknown) => {
    if (down || closed) return;
    down = true;
    logger().warn("route cache: Redis unreachable; serving from this instance's cache, and invalidations from other instances are missed until it is back", {
      channel,
      cause: describeCause(cause, false),
    });
  };

  const receive = (raw: string) => {
    let message: { from?: unknown; key?: unknown; clear?: unknown };
    try {
      message = JSON.parse(raw) as typeof message;
    } catch {
      return;
    }
    if (message.from === self) return;
    if (message.clear === true) apply({ clear: true });
    else if (typeof message.key === 'string') apply({ key: message.key });
  };

  subscriber.on('error', outage);
  subscriber.on('ready', () => {
    if (!down || closed) return;
    down = false;
    apply({ clear: true });
    logger().info('route cache: Redis reachable again; cache cleared, since invalidations sent meanwhile were missed', { channel });
  });
  // node-redis subscribes again by itself after a reconnect.
  subscriber
    .connect()
    .then(() => subscriber.subscribe(channel, receive))
    .catch(outage);

  return {
    publish(message) {
      if (closed) return;
      client.publish(channel, JSON.stringify({ from: self, ...message })).catch((cause: unknown) => {
        if (down || closed) return;
        logger().warn('route cache: could not publish an invalidation to Redis; other instances keep their entry until its ttl', {
          channel,
          cause: describeCause(cause, false),
        });
      });
    },
    async close() {
      closed = true;
      if (subscriber.isOpen) subscriber.destroy();
    },
  };
}
