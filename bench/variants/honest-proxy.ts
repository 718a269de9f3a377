// honest-proxy as a production setup would run it: both guards on (set so they
// never trigger, so their bookkeeping is measured, not their refusals; the rate
// limit keeps its counters in express-rate-limit's default memory store) and
// logging at info. The transport discards records so the bench measures
// winston's level checks and formatting path, not a terminal or a disk. Its
// upstream pool is its default: one keep-alive Agent per createProxy.
import express from 'express';
import winston from 'winston';
import Transport from 'winston-transport';
import { createProxy, type ProxyOptions } from '../../src/index.ts';
import { HOST } from '../scenarios.ts';
import { listen, type StartedVariant, type StartVariant } from './listen.ts';

export class DiscardTransport extends Transport {
  override log(_info: unknown, callback: () => void): void {
    callback();
  }
}

type Settings = Pick<ProxyOptions, 'rateLimit' | 'bodyLimit'> & { routes?: ProxyOptions['routes'] };

/** The guards of this variant: on, and never triggering. */
export const GUARDS_ON: Settings = { rateLimit: { windowMs: 60_000, limit: 1_000_000_000 }, bodyLimit: '1gb' };

/** Shared with the other honest-proxy variants, which differ only in their guards or their route table. */
export async function startHonestProxy(target: string, settings: Settings): Promise<StartedVariant> {
  const logger = winston.createLogger({ level: 'info', transports: [new DiscardTransport()] });
  const app = express();
  app.use(createProxy({ routes: { [HOST]: target }, logger, ...settings }));
  return { port: await listen(app) };
}

export const start: StartVariant = (target) => startHonestProxy(target, GUARDS_ON);
