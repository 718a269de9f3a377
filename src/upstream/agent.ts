import http from 'node:http';
import https from 'node:https';
import { LRUCache } from 'lru-cache';
import type { TlsSettings } from './tls.ts';

/**
 * How long a pooled upstream socket may sit idle. Node's and Vite's servers
 * close idle keep-alive sockets after 5 s; retiring ours a second earlier
 * means we almost never write to a socket the upstream is closing. An
 * upstream's own `Keep-Alive: timeout=N` hint shortens it further (Node's
 * agent honours it).
 */
export const IDLE_SOCKET_MS = 4_000;

/** The proxy's upstream connection pools. */
export interface UpstreamAgents {
  /**
   * The keep-alive pool for a request to `upstream`: the plain one for
   * `http:` and unix sockets (Node keeps a socket path's connections apart),
   * the https one, or for an `https:` upstream with a TLS setting, that
   * setting's own pool, so no connection is reused under other settings.
   */
  agentFor(upstream: URL, tls: TlsSettings | undefined): http.Agent;
  /**
   * For a request that must have a connection of its own (an upgrade, a
   * replay): an agent that keeps nothing alive, so each request gets a new
   * socket and Node sends `Connection: close` where it would, exactly as with
   * `agent: false`. Not `agent: false` itself: for that Node makes a new Agent
   * per request (its lists, listeners and options: 1.2 KiB of heap per open
   * WebSocket in bench:websockets), and an upgrade's request, and with it that
   * Agent, stays reachable for as long as its WebSocket is open (httpxy's
   * listeners on the sockets hold it).
   */
  freshAgentFor(upstream: URL): http.Agent;
  /** Destroys every pool the proxy made; never one the user passed. */
  destroy(): void;
}

export type AgentOption = http.Agent | { http?: http.Agent; https?: https.Agent };

// As many free sockets as sockets: a pool that keeps fewer than a steady load's
// concurrency closes and reopens connections on every burst (HPM's default keeps 64).
const POOL = { keepAlive: true, timeout: IDLE_SOCKET_MS, maxSockets: 256, maxFreeSockets: 256, scheduling: 'lifo' } as const;

// Distinct TLS settings with a pool at a time: a route function that names
// ever new settings cannot grow the proxy's sockets without end.
export const MAX_TLS_POOLS = 64;

/**
 * A pool dropped from the cache may still carry requests: its idle sockets
 * close now, and each busy one when its exchange ends (an agent that no
 * longer keeps alive destroys a socket handed back to it).
 */
function retire(agent: http.Agent): void {
  // Read by Node's agent each time a socket is handed back, though not in its types.
  (agent as http.Agent & { keepAlive: boolean }).keepAlive = false;
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
}

/** One pool per createProxy, not httpxy's module-wide agents shared by every proxy in the process. */
export function createUpstreamAgents(option: AgentOption | undefined): UpstreamAgents {
  const single = option instanceof http.Agent ? option : undefined;
  const plain = single ?? (option as { http?: http.Agent } | undefined)?.http;
  const secure = single ?? (option as { https?: https.Agent } | undefined)?.https;
  const agents = { http: plain ?? new http.Agent(POOL), https: secure ?? new https.Agent(POOL) };
  const tlsPools = new LRUCache<string, https.Agent>({ max: MAX_TLS_POOLS, dispose: retire });
  // Node's defaults, as `agent: false` gets them, without the TLS session
  // cache a discarded agent never got to reuse. An agent without keepAlive
  // pools nothing, and an upgraded socket leaves its agent, so these hold no
  // socket once a request is done and need no destroy.
  const fresh = { http: new http.Agent(), https: new https.Agent({ maxCachedSessions: 0 }) };

  return {
    agentFor(upstream, tls) {
      if (upstream.protocol !== 'https:') return agents.http;
      if (!tls) return agents.https;
      let agent = tlsPools.get(tls.key);
      if (!agent) tlsPools.set(tls.key, (agent = new https.Agent(POOL)));
      return agent;
    },
    freshAgentFor(upstream) {
      return upstream.protocol === 'https:' ? fresh.https : fresh.http;
    },
    destroy() {
      // close() calls this once nothing is in flight: every socket left is idle, and retiring closes it.
      tlsPools.clear();
      if (!plain) agents.http.destroy();
      if (!secure) agents.https.destroy();
    },
  };
}
