// httpxy-raw inside an Express 5 app: the cost of Express itself on top of
// httpxy, and the baseline that separates it from what hpm adds. Same
// default keep-alive pool as httpxy-raw and bare hpm.
import express from 'express';
import { ProxyServer } from 'httpxy';
import { listen, type StartVariant } from './listen.ts';

export const start: StartVariant = async (target) => {
  const proxy = new ProxyServer();
  const app = express();
  app.use((req, res) => {
    proxy.web(req, res, { target }).catch(() => {
      if (res.headersSent) res.destroy();
      else res.status(502).type('text/plain').send('Bad Gateway');
    });
  });
  return { port: await listen(app) };
};
