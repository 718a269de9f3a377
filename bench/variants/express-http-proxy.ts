// express-http-proxy with its defaults except `limit`: its default 1mb body
// cap would turn the 100 MB upload into a 413, so it gets the same '1gb'
// ceiling honest-proxy's bodyLimit has. It still reads whole request bodies
// into memory first (parseReqBody defaults to true); that is its default.
import express from 'express';
import proxy from 'express-http-proxy';
import { listen, type StartVariant } from './listen.ts';

export const start: StartVariant = async (target) => {
  const app = express();
  app.use(proxy(target, { limit: '1gb' }));
  return { port: await listen(app) };
};
