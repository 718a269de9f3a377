import http from 'node:http';
import https from 'node:https';

/**
 * How long a pooled upstream socket may sit idle. Node's and Vite's servers
 * close idle keep-alive sockets after 5 s; retiring ours a second earlier
 * means we almost never write to a socket the upstream is closing. An
 * upstream's own `Keep-Alive: timeout=N` hint shortens it further (Node's
 * agent honours it).
 */
export const IDLE_SOCKET_MS = 4_000;

export interface UpstreamAgents {
  http: http.Agent;
  https: https.Agent;
  /** Which of them the proxy made, and so may destroy on close(): never one the user passed. */
  owned: { http: boolean; https: boolean };
}

export type AgentOption = http.Agent | { http?: http.Agent; https?: https.Agent };

// As many free sockets as sockets: a pool that keeps fewer than a steady load's
// concurrency closes and reopens connections on every burst (HPM's default keeps 64).
const POOL = { keepAlive: true, timeout: IDLE_SOCKET_MS, maxSockets: 256, maxFreeSockets: 256, scheduling: 'lifo' } as const;

/** One pool per createProxy, not httpxy's module-wide agents shared by every proxy in the process. */
export function createUpstreamAgents(option: AgentOption | undefined): UpstreamAgents {
  if (option instanceof http.Agent) return { http: option, https: option as https.Agent, owned: { http: false, https: false } };
  return {
    http: option?.http ?? new http.Agent(POOL),
    https: option?.https ?? new https.Agent(POOL),
    owned: { http: option?.http === undefined, https: option?.https === undefined },
  };
}
