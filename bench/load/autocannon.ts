// One autocannon run, reduced to the numbers the report needs. Runs in the
// bench (parent) process so every variant is loaded by the same client.
import autocannon from 'autocannon';

export interface LoadRequest {
  port: number;
  host: string;
  method: 'GET' | 'POST';
  path: string;
  body: Buffer | undefined;
  connections: number;
  seconds: number;
}

export interface LoadSample {
  rps: number;
  /** Milliseconds, autocannon's whole-ms resolution, over every response (errors included). */
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  /** Socket-level failures: refused or reset connections, parse errors. */
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
}

export async function runLoad(request: LoadRequest): Promise<LoadSample> {
  const result = await autocannon({
    url: `http://127.0.0.1:${request.port}${request.path}`,
    method: request.method,
    headers: {
      host: request.host,
      ...(request.body && { 'content-type': 'application/octet-stream' }),
    },
    ...(request.body && { body: request.body }),
    connections: request.connections,
    duration: request.seconds,
    // autocannon only notices the end of `duration` on its next sample tick
    // (default every 1000 ms); short runs would silently last a whole second.
    sampleInt: 100,
    timeout: 10,
  });
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]));
  return {
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
  };
}
