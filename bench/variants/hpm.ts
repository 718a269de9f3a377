// Bare http-proxy-middleware 4 with its defaults: the baseline honest-proxy is
// built on, so the gap to it is the cost of honest-proxy's own work.
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { listen, type StartVariant } from './listen.ts';

export const start: StartVariant = async (target) => {
  const app = express();
  app.use(createProxyMiddleware({ target }));
  return { port: await listen(app) };
};
