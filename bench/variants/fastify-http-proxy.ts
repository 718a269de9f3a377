// The non-Express reference: Fastify 5 with @fastify/http-proxy (undici
// underneath), defaults throughout.
import type { AddressInfo } from 'node:net';
import fastifyHttpProxy from '@fastify/http-proxy';
import Fastify from 'fastify';
import type { StartVariant } from './listen.ts';

export const start: StartVariant = async (target) => {
  const app = Fastify();
  await app.register(fastifyHttpProxy, { upstream: target });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    port: (app.server.address() as AddressInfo).port,
    // @fastify/reply-from's default undici pool (getUndiciOptions): keep-alive,
    // 128 connections, no separate cap on idle ones. Declared, not observed:
    // undici does not go through node:http.
    pool: { client: 'undici Pool (@fastify/reply-from default)', keepAlive: true, maxSockets: 128, maxFreeSockets: null },
  };
};
