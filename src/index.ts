export { createProxy, type HonestProxy } from './create-proxy.ts';
export { portHostRoutes, type PortHostRoutesOptions } from './routes/port-host.ts';
export type { Routes, RouteFunction, ProxyRequest } from './routes/table.ts';
export type { RouteLookup } from './routes/deadline.ts';
export { cachedRoutes, type CachedRoutes, type CachedRoutesOptions, type RouteCache, type RouteCacheOptions, type RouteCacheStats } from './routes/cache.ts';
export type { RedisClientLike } from './routes/cache-redis.ts';
export type { Target, TargetUrl, RouteTarget } from './routes/target.ts';
export type { RequestHeadersOptions, HeaderValueFunction, RouteInfo } from './upstream/shaping-options.ts';
export type { TransformResponseOptions, ResponseTransformContext } from './upstream/transform-options.ts';
export { ProxyOptionsError, DEFAULT_TIMEOUTS, type ProxyOptions, type TimeoutOptions } from './options.ts';
export { IDLE_SOCKET_MS } from './upstream/agent.ts';
export type { CloseOptions } from './lifecycle/shutdown.ts';
export type { MetricsOptions } from './observe/metrics.ts';
export type { ActivityInfo, ActivityKind, ActivityListener } from './observe/activity.ts';
export type { PassiveHealthOptions } from './upstream/balancer.ts';
export type { BalanceOption, BalanceKeyFunction } from './upstream/balance/options.ts';
export type { UpstreamTlsOptions } from './upstream/tls.ts';
export type { TrustProxy, ForwardedMode } from './upstream/forwarded.ts';
export { channels as diagnosticsChannels } from './observe/channels.ts';
export type { RequestStartMessage, ResponseMessage, ErrorMessage, WebSocketMessage } from './observe/channels.ts';
export { DEFAULT_BODY_LIMIT } from './guards/body-limit.ts';
export type { RateLimitOptions } from './guards/rate-limit.ts';
export type { ErrorFormat, ErrorRenderer } from './respond.ts';
export { classifyUpstreamError } from './classify.ts';
export {
  ProxyError,
  MissingHostError,
  BadRequestError,
  RouteNotFoundError,
  RouteLookupTimeoutError,
  PayloadTooLargeError,
  RateLimitedError,
  UpstreamUnreachableError,
  UpstreamTimeoutError,
  UpstreamProtocolError,
  ResponseTransformError,
  UpstreamUnavailableError,
  UpstreamGoneError,
  GuardUnavailableError,
  InternalProxyError,
  ProxyConfigurationError,
  PathRewriteError,
  ShuttingDownError,
  isProxyError,
  type ProxyErrorCode,
  type ProxyErrorInit,
  type ProxyStatusErrorType,
} from './errors.ts';
