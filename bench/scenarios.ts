// What is measured, and how long, in each mode. Quick and full run the same
// scenarios with the same sizes; quick only has fewer rounds and shorter
// load windows, so its numbers are noisier but comparable.
import { MiB } from './ipc/messages.ts';

/** Every request carries this Host: honest-proxy routes on it, the others ignore it. */
export const HOST = 'bench.localhost';

/** A fixed request fired by autocannon for a fixed time. */
export interface LoadScenario {
  kind: 'load';
  id: string;
  title: string;
  method: 'GET' | 'POST';
  path: string;
  bodyBytes: number;
  connections: number;
  /** Proxies point at a port nobody listens on: every request is a proxy error. */
  deadUpstream: boolean;
}

/** A few big streamed transfers, timed end to end. */
export interface TransferScenario {
  kind: 'transfer';
  id: string;
  title: string;
  direction: 'download' | 'upload';
  bytes: number;
  /** Transfers in flight at once; the RSS target must hold for all of them together. */
  concurrency: number;
}

export type Scenario = LoadScenario | TransferScenario;

export interface Settings {
  mode: 'quick' | 'full';
  rounds: number;
  /** Measured autocannon window per run. */
  loadSeconds: number;
  /** Unmeasured autocannon run per fresh child, so JIT and connection setup are not in round 1. */
  warmupSeconds: number;
}

export const SETTINGS: Record<Settings['mode'], Settings> = {
  // Nine variants: quick stays near a minute and a half, full near ten minutes on 2 cores.
  quick: { mode: 'quick', rounds: 2, loadSeconds: 0.5, warmupSeconds: 0.3 },
  full: { mode: 'full', rounds: 5, loadSeconds: 3, warmupSeconds: 2 },
};

export const SCENARIOS: Scenario[] = [
  { kind: 'load', id: 'small-get', title: 'Small GET (1 KiB response, 100 connections)', method: 'GET', path: '/small', bodyBytes: 0, connections: 100, deadUpstream: false },
  { kind: 'load', id: 'post-64k', title: 'POST with a 64 KiB body (100 connections)', method: 'POST', path: '/sink', bodyBytes: 64 * 1024, connections: 100, deadUpstream: false },
  { kind: 'transfer', id: 'download-100m', title: 'Streamed download, 100 MiB x 1', direction: 'download', bytes: 100 * MiB, concurrency: 1 },
  // Chunked, without Content-Length: the harder case for a body limit, which
  // must then count bytes as they stream instead of checking one header.
  { kind: 'transfer', id: 'upload-100m', title: 'Streamed chunked upload, 100 MiB x 1', direction: 'upload', bytes: 100 * MiB, concurrency: 1 },
  { kind: 'load', id: 'error-502', title: 'Error path: upstream port closed (100 connections)', method: 'GET', path: '/small', bodyBytes: 0, connections: 100, deadUpstream: true },
];
