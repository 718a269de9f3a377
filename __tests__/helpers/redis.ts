import { spawn, type ChildProcess } from 'node:child_process';
import { closedPort } from './servers.ts';

export interface RedisServer {
  url: string;
  stop(): Promise<void>;
}

/**
 * A real redis-server on a free loopback port (or on `port`, to start one
 * again where a stopped one was), in memory only. Stopping it is how tests
 * make the store fail.
 */
export async function startRedis(port?: number): Promise<RedisServer> {
  port ??= await closedPort();
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run redis-server (is it installed? .ci/run installs it): ${err.message}`));
    });
    child.stdout!.on('data', (data: Buffer) => {
      output += data.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  let stopped = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (stopped || child.exitCode !== null) return resolve();
        stopped = true;
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
