// The floor for anything built on httpxy: a bare node:http server handing
// every request to httpxy's ProxyServer.web, no framework, no middleware.
// With no `agent` option httpxy uses its module-wide keep-alive Agent (256
// sockets, 64 kept free), the same pool bare hpm gets by default.
// httpxy is not a direct dependency: it is the one http-proxy-middleware 4
// brings (hoisted to node_modules/httpxy), so this is the very engine hpm runs.
import { ProxyServer } from 'httpxy';
import { listen, type StartVariant } from './listen.ts';

export const start: StartVariant = async (target) => {
  const proxy = new ProxyServer();
  return {
    port: await listen((req, res) => {
      // web() rejects on an upstream failure (and emits nothing while no
      // 'error' listener is set): answer it, as every other variant does.
      proxy.web(req, res, { target }).catch(() => {
        if (res.headersSent) res.destroy();
        else res.writeHead(502, { 'content-type': 'text/plain' }).end('Bad Gateway');
      });
    }),
  };
};
